"""cvpods detector checkpoints: the FCOS-family name table round trip and --mode=convert (lla_jax/convert.py).
The state-dict builders live with the other importers' fixtures in tests/test_weights.py."""
import json
import os
import pickle

import jax
import numpy as np
import pytest

from lla_jax import convert, weights
from tests.cvpods_weights import cvpods_state_dict, tiny_model_cfg
from tests.test_weights import _detector_params, tiny_lla_config


@pytest.mark.parametrize("aux", ["iou", "centerness"])
def test_cvpods_roundtrip(tmp_path, aux):
  cfg = tiny_model_cfg(aux)
  sd = cvpods_state_dict(np.random.default_rng(0), cfg)
  path = str(tmp_path / "model_final.pkl")
  with open(path, "wb") as f:
    pickle.dump({"model": sd, "iteration": 28125}, f)
  params, report = weights.load_pretrained(_detector_params(cfg), path, cfg)
  assert report.format == "cvpods" and not report.missing and not report.unused
  assert len(report.loaded) == len(sd)
  # Placement, checked by hand for a few tensors.
  np.testing.assert_array_equal(params["head"]["scales"][2], sd["head.scales.2.scale"][0])
  np.testing.assert_array_equal(params["head"]["cls_norm1"]["scale"], sd["head.cls_subnet.4.weight"])
  np.testing.assert_array_equal(params["head"]["box_tower3"]["kernel"],
                                sd["head.bbox_subnet.9.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["fpn"]["lateral4"]["kernel"][0, 0],
                                sd["backbone.fpn_lateral4.weight"][:, :, 0, 0].T)
  np.testing.assert_array_equal(params["fpn"]["p7"]["bias"], sd["backbone.top_block.p7.bias"])
  np.testing.assert_array_equal(params["backbone"]["res3"]["block0"]["norm1"]["var"],
                                sd["backbone.bottom_up.res3.0.conv1.norm.running_var"])
  aux_mod = "iou_pred" if aux == "iou" else "centerness"
  np.testing.assert_array_equal(params["head"][aux_mod]["bias"],
                                sd["head.ious_pred.bias" if aux == "iou" else "head.centerness.bias"])
  # Export gives back exactly the cvpods names and tensors.
  exported = weights.export_cvpods(params)
  assert exported.keys() == sd.keys()
  for k in sd:
    np.testing.assert_array_equal(exported[k], sd[k], err_msg=k)


def test_cvpods_errors():
  cfg = tiny_model_cfg()
  sd = cvpods_state_dict(np.random.default_rng(0), cfg)
  wrong = dict(sd)
  wrong["head.centerness.weight"] = wrong.pop("head.ious_pred.weight")  # FCOS checkpoint into an LLA head
  with pytest.raises(ValueError, match="head.centerness.weight"):
    weights.convert_cvpods(_detector_params(cfg), wrong)
  cfg2 = tiny_model_cfg()
  cfg2.head.channels = 32
  cfg2.head.gn_groups = 8
  with pytest.raises(ValueError, match="head.cls_subnet.0.weight"):
    weights.convert_cvpods(_detector_params(cfg2), sd)


def test_cvpods_pth(tmp_path):
  torch = pytest.importorskip("torch")
  cfg = tiny_model_cfg()
  sd = cvpods_state_dict(np.random.default_rng(0), cfg)
  path = str(tmp_path / "model_final.pth")
  torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}, "iteration": 28125}, path)
  params, report = weights.load_cvpods(_detector_params(cfg), path)
  exported = weights.export_cvpods(params)
  assert all(np.array_equal(exported[k], sd[k]) for k in sd)


def test_convert_command_then_eval_restore(tmp_path, capsys):
  from lla_jax import checkpointing, cli, convert, sharding, train_state
  from lla_jax.methods import get_method
  c = tiny_lla_config(tmp_path / "model_final.pkl")
  sd = cvpods_state_dict(np.random.default_rng(5), c.model)
  with open(c.convert.source, "wb") as f:
    pickle.dump({"model": dict(sd, **{"extra.num_batches_tracked": np.asarray(3)}), "iteration": 28125}, f)
  workdir = str(tmp_path / "w")
  with jax.default_prng_impl("unsafe_rbg"):   # threefry makes the Flax init compile ~8x slower on CPU
    report = cli.run(c, workdir, "convert")
  out = capsys.readouterr().out
  assert f"loaded {len(sd)}, missing 0, defaulted 0, unused 1" in out and "extra.num_batches_tracked" in out
  assert len(report.loaded) == len(sd)
  saved = json.load(open(os.path.join(workdir, "convert_report.json")))
  assert saved["format"] == "cvpods" and saved["pixel_convention"] == "caffe" and saved["initialised"] == []
  # --mode=eval restores exactly this way (evaluate.evaluate): a fresh state of the same config, then the checkpoint.
  # The template is abstract (shapes, dtypes, shardings): only the checkpoint supplies values.
  template = jax.eval_shape(lambda: train_state.create_train_state(c, get_method(c), sharding.make_mesh())[0])
  ckpt = checkpointing.Checkpoints(workdir)
  assert ckpt.all_steps() == [0]
  state = ckpt.restore(template)
  ckpt.close()
  exported = weights.export_cvpods(jax.device_get(state.params))
  assert exported.keys() == sd.keys()
  for k in sd:
    np.testing.assert_array_equal(exported[k], sd[k], err_msg=k)
  assert int(state.step) == 0
  # A second conversion into the same workdir would be shadowed by / shadow the first: refused.
  with pytest.raises(FileExistsError, match="fresh --workdir"):
    convert.convert(c, workdir)


def test_convert_command_checks(tmp_path):
  c = tiny_lla_config(tmp_path / "model_final.npz")
  np.savez(c.convert.source, **cvpods_state_dict(np.random.default_rng(6), c.model))
  c.data.bgr, c.data.pixel_mean, c.data.pixel_std = False, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
  with pytest.raises(ValueError, match=r"'caffe' pixels .* data\.bgr=False.*--config\.data\.bgr=True "
                                       r"--config\.data\.pixel_mean='\(103\.53, 116\.28, 123\.675\)' "
                                       r"--config\.data\.pixel_std='\(1, 1, 1\)'"):
    convert.convert(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "checkpoints")
  c.convert.source = None
  with pytest.raises(ValueError, match="config.convert.source"):
    convert.convert(c, str(tmp_path / "w3"))
