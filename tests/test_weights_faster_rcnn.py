"""cvpods Faster R-CNN checkpoints: the name table (lla_jax/weights/faster_rcnn.py), the box head's channel-major
fc1 against a numpy re-statement of cvpods' box head, and --mode=convert then the eval restore giving the same
detections as the model the file was written from."""
import json
import os
import pickle

import jax
import numpy as np
import pytest

from lla_jax import checkpointing, cli, sharding, train_state, weights
from lla_jax.methods import get_method
from lla_jax.models import faster_rcnn as frcnn_model
from tests.methods.test_faster_rcnn import HW, tiny_config
from tests.test_sharding import random_batch


def frozen_config(source):
  """The tiny Faster R-CNN with FrozenBN (a released checkpoint's backbone), converting `source`."""
  c = tiny_config()
  c.model.backbone.norm = "frozen_bn"
  c.model.backbone.freeze_at = 2
  c.convert.source = str(source)
  return c


def _state(config):
  with jax.default_prng_impl("unsafe_rbg"):   # threefry makes the Flax init compile ~8x slower on CPU
    return train_state.create_train_state(config, get_method(config), sharding.make_mesh(jax.devices()[:1]))[0]


def _randomise(params, seed):
  """Every parameter random (FrozenBN variances positive), so that no name can be confused with another."""
  r = np.random.default_rng(seed)
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for path, v in leaves:
    x = r.normal(0, 0.1, np.shape(v)).astype(np.float32)
    out.append(np.abs(x) + 0.5 if jax.tree_util.keystr(path).endswith("['var']") else x)
  return jax.tree_util.tree_unflatten(tree, out)


def test_names_and_channel_major_fc1():
  c = frozen_config("unused.pkl")
  params = _randomise(jax.device_get(_state(c).params), 1)
  sd = weights.export_cvpods_rcnn(params)
  for name in ("backbone.bottom_up.stem.conv1.weight", "backbone.fpn_lateral2.weight", "backbone.fpn_output5.bias",
               "proposal_generator.rpn_head.conv.weight", "proposal_generator.rpn_head.objectness_logits.bias",
               "proposal_generator.rpn_head.anchor_deltas.weight", "roi_heads.box_head.fc1.weight",
               "roi_heads.box_head.fc2.bias", "roi_heads.box_predictor.cls_score.weight",
               "roi_heads.box_predictor.bbox_pred.bias"):
    assert name in sd, name
  assert not any("top_block" in n for n in sd)                # the max-pooled P6 has no parameters
  ch = c.model.fpn.channels
  assert sd["roi_heads.box_head.fc1.weight"].shape == (32, ch * 7 * 7)   # torch Linear (out, in)
  assert sd["proposal_generator.rpn_head.anchor_deltas.weight"].shape == (12, ch, 1, 1)
  assert weights.detect_format(sd) == "cvpods"
  # cvpods box_head.py: x.flatten(1) of the (R, C, 7, 7) RoI feature, then Linear layers y = x W^T + b.
  pooled = np.random.default_rng(2).normal(size=(5, 7, 7, ch)).astype(np.float32)
  x = pooled.transpose(0, 3, 1, 2).reshape(5, -1).astype(np.float64)
  lin = lambda v, n: v @ sd[n + ".weight"].T.astype(np.float64) + sd[n + ".bias"]
  x = np.maximum(lin(x, "roi_heads.box_head.fc1"), 0)
  x = np.maximum(lin(x, "roi_heads.box_head.fc2"), 0)
  model = frcnn_model.build(c.model, 7)
  cls, box = model.apply({"params": params}, pooled, method="box_head")
  np.testing.assert_allclose(cls, lin(x, "roi_heads.box_predictor.cls_score"), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(box, lin(x, "roi_heads.box_predictor.bbox_pred"), rtol=1e-4, atol=1e-5)


def test_convert_then_eval_gives_the_same_detections(tmp_path, capsys):
  """Our params exported to cvpods names and pickled as model_final.pkl, --mode=convert, the checkpoint
  restored as --mode=eval does (an abstract state of the same config): the same params and, through
  method.predict, identical detections."""
  c = frozen_config(tmp_path / "model_final.pkl")
  c.convert.check_pixels = False          # the tiny model's pixels are the quick start's, not caffe's
  original = _randomise(jax.device_get(_state(c).params), 3)
  sd = weights.export_cvpods_rcnn(original)
  with open(c.convert.source, "wb") as f:
    pickle.dump({"model": dict(sd, **{"extra.num_batches_tracked": np.asarray(3)}), "iteration": 28125}, f)
  workdir = str(tmp_path / "w")
  with jax.default_prng_impl("unsafe_rbg"):
    report = cli.run(c, workdir, "convert")
  assert f"loaded {len(sd)}, missing 0, defaulted 0, unused 1" in capsys.readouterr().out
  assert len(report.loaded) == len(sd)
  saved = json.load(open(os.path.join(workdir, "convert_report.json")))
  assert saved["format"] == "cvpods" and saved["initialised"] == []

  method = get_method(c)
  template = jax.eval_shape(lambda: train_state.create_train_state(c, method, sharding.make_mesh())[0])
  ckpt = checkpointing.Checkpoints(workdir)
  state = ckpt.restore(template)
  ckpt.close()
  restored = jax.device_get(state.params)
  jax.tree.map(np.testing.assert_array_equal, restored, original)
  batch = random_batch(4, b=2, m=8, hw=HW)
  predict = jax.jit(method.predict)
  want = jax.device_get(predict({"params": original}, batch))
  got = jax.device_get(predict({"params": restored, **jax.device_get(state.model_state)}, batch))
  for field in ("boxes", "scores", "classes", "valid"):
    np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
  assert np.asarray(want.valid).any()


def test_wrong_model_is_refused():
  c = frozen_config("unused.pkl")
  params = jax.device_get(_state(c).params)
  sd = weights.export_cvpods_rcnn(params)
  del sd["roi_heads.box_head.fc2.weight"]
  with pytest.raises(ValueError, match=r"missing from the file: \['params/head/fc2/kernel"):
    weights.convert_cvpods_rcnn(params, sd)
  with pytest.raises(ValueError, match="config.method='faster_rcnn'"):
    weights.convert_cvpods_rcnn({"backbone": {}, "fpn": {}, "head": {}}, sd)
