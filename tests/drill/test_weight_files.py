"""Bad-input drill of `python main.py --mode=convert --config.convert.source=FILE` (issue 14 item 5): weight files
of the wrong model, truncated, empty, of another format. Each case runs main.py as a user does (one subprocess for
all, tests/drill/driver.py) and must stop before the model is built, with exit status 1 and a first error line
naming the file and what was expected; never a stack trace."""
import pickle

import h5py
import numpy as np

from tests.drill.common import check_errors, module_drill

R50 = "configs/lla_r50.py"
MOBILENET = "configs/alfnet_mobilenet_2s.py"


def _keras_h5(path, layers):
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = [name.encode() for name in layers]
    for name in layers:
      group = f.create_group(name)
      group.attrs["weight_names"] = [f"{name}/kernel:0".encode()]
      group.create_dataset(f"{name}/kernel:0", data=np.zeros((3, 3, 3, 8), np.float32))
  return path


def _cases(tmp):
  mobilenet = _keras_h5(tmp / "mobilenet_1_0_224_tf_no_top.h5", ["conv1", "conv_dw_1", "conv_pw_1"])
  random = tmp / "random.npz"
  np.savez(random, a=np.random.rand(3, 4), b=np.random.rand(5))
  torchvision = tmp / "resnet50_torchvision.npz"
  np.savez(torchvision, **{"conv1.weight": np.zeros((64, 3, 7, 7), np.float32),
                           "layer1.0.conv1.weight": np.zeros((64, 64, 1, 1), np.float32)})
  (tmp / "cut.npz").write_bytes(random.read_bytes()[:120])
  (tmp / "empty.h5").write_bytes(b"")
  (tmp / "cut.h5").write_bytes(mobilenet.read_bytes()[:1500])
  (tmp / "text.pkl").write_text("not a pickle\n")
  (tmp / "list.pkl").write_bytes(pickle.dumps([np.zeros(3)]))
  with h5py.File(tmp / "keras3.weights.h5", "w") as f:
    f.create_group("layers")
  (tmp / "model.ckpt").write_bytes(b"\0" * 16)

  def convert(config, source, *more):
    return [f"--config={config}", f"--workdir={tmp / 'w'}", "--mode=convert", f"--config.convert.source={source}",
            *more]

  return {
      "MobileNet h5 for an R-50 config": (convert(R50, mobilenet),
                                          ["mobilenet_1_0_224_tf_no_top.h5", "MobileNet v1 weights",
                                           "config.model.backbone is a resnet", "expected a resnet weights file"]),
      "ResNet npz for a MobileNet config": (convert(MOBILENET, torchvision),
                                            ["resnet50_torchvision.npz", "torchvision (ResNet) weights",
                                             "backbone.name='mobilenet'", "expected mobilenet weights"]),
      "torchvision ResNet for a caffe-layout config": (convert(R50, torchvision),
                                                       ["resnet50_torchvision.npz", "torchvision weights need",
                                                        "model.backbone.layout in ('torchvision',)", "'caffe'"]),
      "random npz for an R-50 config": (convert(R50, random),
                                        ["random.npz", "unrecognised weight names", "['a', 'b']",
                                         "expected MSRA caffe, detectron2/cvpods, torchvision or Keras"]),
      "truncated npz": (convert(R50, tmp / "cut.npz"),
                        ["cut.npz", "cannot be read as a numpy .npz archive", "truncated"]),
      "empty h5": (convert(R50, tmp / "empty.h5"), ["empty.h5", "cannot be read as a legacy Keras HDF5 weights file"]),
      "truncated h5": (convert(R50, tmp / "cut.h5"), ["cut.h5", "cannot be read as a legacy Keras HDF5 weights file"]),
      "text file named .pkl": (convert(R50, tmp / "text.pkl"), ["text.pkl", "cannot be read as a pickle"]),
      "pickle of a list": (convert(R50, tmp / "list.pkl"), ["list.pkl", "expected a dict of named tensors, got list"]),
      "Keras 3 .weights.h5": (convert(R50, tmp / "keras3.weights.h5"),
                              ["keras3.weights.h5", "not a legacy Keras weights file", "model.save('x.h5')"]),
      "unknown suffix": (convert(R50, tmp / "model.ckpt"),
                         ["model.ckpt", "unknown weights suffix '.ckpt'", "expected .pkl, .pth, .pt, .npz or .h5"]),
      "missing weights file": (convert(R50, tmp / "nowhere.pkl"), ["nowhere.pkl", "does not exist"]),
      "no source given": ([f"--config={R50}", f"--workdir={tmp / 'w'}", "--mode=convert"],
                          ["--mode=convert needs --config.convert.source=FILE"]),
  }


drill = module_drill("main.py", _cases)


def test_bad_weight_files_name_the_file_and_the_expected_form(drill):
  cases, results = drill
  assert not check_errors(cases, results, status=1)
  for name in cases:   # stopped before a checkpoint was written
    assert "Saved checkpoint" not in results[name][1], name
