"""lla_jax/evaluate.py: protocol choice, the files every evaluation writes, and metrics that agree with the
standalone evaluators run on those files (CrowdHuman for LLA on synthetic crowds; CityPersons for ALFNet on
synthetic crowds and, through a stand-in pipeline, on data.name == 'citypersons')."""
import json
import os

import jax
import numpy as np
import pytest

import data_pipelines
from configs import alfnet_quickstart, quickstart
from lla_jax import evaluate, sharding, train_state
from lla_jax.evaluation import cityjson, citypersons, crowdhuman
from lla_jax.methods import get_method

NUM_VAL = 5


def _tiny_data(c, data_dir):
  d = c.data
  d.data_dir = str(data_dir)
  d.render_size, d.min_size, d.max_size = (96, 128), 96, 128
  d.num_train_images, d.num_val_images, d.num_parallel_calls = 4, NUM_VAL, 1
  c.test.batch_size = 8                 # one batch over the 8 test devices, 3 filler images
  c.train.max_pictures = 2


def lla_config(data_dir):
  c = quickstart.get_config()
  _tiny_data(c, data_dir)
  c.data.pad_size = (128, 128)
  m = c.model
  m.backbone.width, m.fpn.channels, m.head.channels, m.head.num_convs, m.head.gn_groups = 8, 16, 16, 1, 8
  c.test.score_thresh = 0.0             # an untrained head scores ~0.01: keep its detections
  return c


def alfnet_config(data_dir):
  c = alfnet_quickstart.get_config()
  _tiny_data(c, data_dir)
  c.data.pad_size = (96, 128)
  c.model.backbone.width = 8
  c.alfnet.cpb_channels = c.alfnet.p3_channels = c.alfnet.p6_channels = 8
  c.test.score_thresh = 0.0
  return c


def _state(c):
  method = get_method(c)
  mesh = sharding.make_mesh()
  with jax.default_prng_impl("unsafe_rbg"):   # threefry makes the Flax init compile ~8x slower on CPU
    state, _, _ = train_state.create_train_state(c, method, mesh)
  return state, method, mesh


@pytest.fixture(scope="module")
def alfnet(tmp_path_factory):
  """(config, state, method, mesh, metrics of its evaluation in workdir)."""
  c = alfnet_config(tmp_path_factory.mktemp("data"))
  state, method, mesh = _state(c)
  workdir = str(tmp_path_factory.mktemp("w"))
  return c, state, method, mesh, evaluate.evaluate(c, workdir, state=state, method=method, mesh=mesh), workdir


def _read(path):
  with open(path) as f:
    return json.load(f)


def _common_files(workdir, m, protocol):
  saved = _read(os.path.join(workdir, "eval_metrics.json"))
  assert {"MR", "AP", "Recall", "JI", "step", "protocol", "split", "num_images"} <= set(saved)
  assert saved["protocol"] == protocol and saved["step"] == 0 and saved["num_images"] == NUM_VAL
  assert 0.0 <= saved["MR"] <= 1.0
  with open(os.path.join(workdir, "eval_table_step0.txt")) as f:
    assert f.read() == evaluate.format_table(m) + "\n"
  with open(os.path.join(workdir, "mr_fppi_step0.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  drawn = sorted(os.listdir(os.path.join(workdir, "pictures")))
  assert len(drawn) == 3 and "sheet_step0.png" in drawn   # 2 pictures (train.max_pictures) + the contact sheet
  assert saved["pictures"]["sheet"].endswith("sheet_step0.png") and saved["pictures"]["threshold"] is not None
  return saved


def test_protocol_choice():
  c = lla_config("/nonexistent")
  assert evaluate.eval_protocol(c) == "crowdhuman"
  c.data.name = "citypersons"
  assert evaluate.eval_protocol(c) == "citypersons"
  a = alfnet_config("/nonexistent")
  assert a.data.name == "synthetic_crowds" and evaluate.eval_protocol(a) == "citypersons"
  a.evals.citypersons.type = "coco"
  with pytest.raises(ValueError, match="config.evals.citypersons: evaluator 'coco'"):
    evaluate.eval_protocol(a)


def test_crowdhuman_protocol_files(tmp_path, capsys):
  c = lla_config(tmp_path / "data")
  state, method, mesh = _state(c)
  workdir = str(tmp_path / "w")
  m = evaluate.evaluate(c, workdir, state=state, method=method, mesh=mesh)
  saved = _common_files(workdir, m, "crowdhuman")
  assert "MR^-2" in capsys.readouterr().out
  # The odgt file holds one line per val image; the metrics are what the evaluator gives on the files.
  dt = crowdhuman.load_odgt(m["detections"])
  _, info = data_pipelines.create_dataset(evaluate.eval_data_config(c), "val", 8, False, 0)
  assert [r["ID"] for r in dt] == [r["ID"] for r in info["records"]]
  assert sum(len(r["dtboxes"]) for r in dt) > 0
  res = crowdhuman.evaluate(crowdhuman.load_odgt(info["gt_odgt"]), dt)
  for key in ("MR", "AP", "Recall", "JI"):
    assert saved[key] == pytest.approx(res[key], abs=1e-12)
  # The boxes are the predictions of the jitted model on the eval batches (test.padding 'divisible': padded
  # to the image's size rounded up to 32), in original pixels (rounded to 0.01).
  assert m["padding"] == "divisible" and m["compilations"] == len(m["padded_shapes"]) == 1
  batch = next(iter(data_pipelines.create_dataset(evaluate.eval_data_config(c), "val", 8, False, 0)[0]))
  assert batch["image"].shape[1:3] == tuple(-(-v // 32) * 32 for v in batch["image_size"][0])
  det = jax.device_get(jax.jit(method.predict)({"params": state.params, **state.model_state},
                                               sharding.shard_batch(batch, mesh)))
  v = np.asarray(det.valid[0])
  want = np.asarray(det.boxes[0])[v]
  got = np.array([[b["box"][0], b["box"][1], b["box"][0] + b["box"][2], b["box"][1] + b["box"][3]]
                  for b in dt[0]["dtboxes"]])
  np.testing.assert_allclose(got, want, atol=0.011)


def test_citypersons_protocol_on_synthetic(alfnet):
  c, _, _, _, m, workdir = alfnet
  saved = _common_files(workdir, m, "citypersons")
  assert set(saved["setups"]) == {"0.5", "0.75"}
  assert set(saved["setups"]["0.5"]) == set(citypersons.SETUPS)
  assert saved["MR"] == saved["setups"]["0.5"]["Reasonable"] and saved["MR_75"] == saved["setups"]["0.75"]["Reasonable"]
  # Detections: the CityPersons json list, image ids 1..N; re-evaluated from the files alone.
  dt = citypersons.load_dt(m["detections"])
  gt = citypersons.load_gt(m["gt"])
  assert m["detections"].endswith("val_step0.json") and dt
  assert {d["image_id"] for d in dt} <= set(range(1, NUM_VAL + 1)) and {d["category_id"] for d in dt} == {1}
  for iou in (0.5, 0.75):
    res = citypersons.evaluate(gt, dt, iou=iou)
    for name, r in res.items():
      want = None if np.isnan(r["MR"]) else r["MR"]
      assert saved["setups"][f"{iou:g}"][name] == pytest.approx(want, abs=1e-12), (iou, name)
  # AP / Recall / JI from the CrowdHuman evaluator on the same detections (synthetic has its odgt GT).
  _, info = data_pipelines.create_dataset(c.data, "val", 8, False, 0)
  res = crowdhuman.evaluate(crowdhuman.load_odgt(info["gt_odgt"]), crowdhuman.load_odgt(m["detections_odgt"]))
  assert saved["AP"] == pytest.approx(res["AP"], abs=1e-12) and saved["Recall"] == pytest.approx(res["Recall"])


@pytest.mark.parametrize("with_ids", [True, False])
def test_citypersons_data_uses_gt_json(tmp_path, monkeypatch, alfnet, with_ids):
  """data.name == 'citypersons': GT from info['gt_json'], image ids from the records' eval_image_id or, without
  it, from the GT im_names; no CrowdHuman metrics. A stand-in pipeline serves the synthetic images under
  CityPersons-like names and shuffled GT image ids, so the MRs must equal the synthetic run's."""
  c, state, method, mesh, reference, _ = alfnet
  original = data_pipelines.create_dataset
  city = c.copy_and_resolve_references()
  city.data.name = "citypersons"

  def stand_in(data_cfg, split, *args, **kw):
    synth = data_cfg.copy_and_resolve_references()
    synth.name = "synthetic_crowds"
    it, info = original(synth, split, *args, **kw)
    lines = crowdhuman.load_odgt(info["gt_odgt"])
    gt = citypersons.load_gt(reference["gt"])
    new_id = {im["id"]: 1000 - 7 * im["id"] for im in gt["images"]}
    for im in gt["images"]:
      im["im_name"] = im["im_name"] + cityjson.CITYPERSONS_SUFFIX
      im["id"] = new_id[im["id"]]
    for a in gt["annotations"]:
      a["image_id"] = new_id[a["image_id"]]
    gt["images"].reverse()
    path = str(tmp_path / "val_gt.json")
    with open(path, "w") as f:
      json.dump(gt, f)
    records = [dict(r, **({"eval_image_id": new_id[r["index"] + 1]} if with_ids else {})) for r in info["records"]]
    assert len(lines) == len(records)
    info = {k: v for k, v in info.items() if k != "gt_odgt"}
    return it, dict(info, records=records, gt_json=path)

  monkeypatch.setattr(data_pipelines, "create_dataset", stand_in)
  workdir = str(tmp_path / "w")
  m = evaluate.evaluate(city, workdir, state=state, method=method, mesh=mesh)
  assert m["gt"] == str(tmp_path / "val_gt.json") and m["AP"] is None and m["Recall"] is None
  assert m["setups"] == reference["setups"]
  dt = citypersons.load_dt(m["detections"])
  assert {d["image_id"] for d in dt} <= {1000 - 7 * i for i in range(1, NUM_VAL + 1)}
  saved = _common_files(workdir, m, "citypersons")
  assert saved["AP"] is None and "n/a (no CrowdHuman-format GT" in open(os.path.join(workdir, "eval_table_step0.txt")).read()


def test_citypersons_image_ids_errors():
  gt = {"images": [{"id": 3, "im_name": "a_leftImg8bit.png"}, {"id": 9, "im_name": "b.png"}]}
  recs = [{"ID": "b", "index": 0}, {"ID": "a", "index": 1}]
  assert cityjson.citypersons_image_ids(gt, recs, "gt.json") == [9, 3]
  with pytest.raises(ValueError, match="gt.json: 1 eval images have no GT image.*'c'"):
    cityjson.citypersons_image_ids(gt, recs + [{"ID": "c", "index": 2}], "gt.json")
  with pytest.raises(ValueError, match="eval_image_ids absent"):
    cityjson.citypersons_image_ids(gt, [{"ID": "a", "index": 0, "eval_image_id": 4}], "gt.json")


def test_eval_specs_from_config_and_data_set_registry():
  """config.evals (big_vision style: entry -> type, split) in name order; empty -> the data set's evaluators."""
  from data_pipelines import registry as datasets
  from lla_jax.evaluation import registry as evaluators
  assert {"crowdhuman", "citypersons"} <= set(evaluators.names())
  c = lla_config("/nonexistent")
  assert evaluate.eval_specs(c) == [("crowdhuman", "crowdhuman", "val")]
  c.data.name = "citypersons"
  assert evaluate.eval_specs(c) == [(n, n, "val") for n in datasets.get("citypersons").evals]
  a = alfnet_config("/nonexistent")
  a.data.eval_split = "train"           # the ALFNet entry follows data.eval_split
  assert evaluate.eval_specs(a) == [("citypersons", "citypersons", "train")]
  a.evals.b_crowd = {"type": "crowdhuman", "split": "val"}
  assert evaluate.eval_specs(a) == [("b_crowd", "crowdhuman", "val"), ("citypersons", "citypersons", "train")]
  with pytest.raises(ValueError, match="evaluator='nope': expected one of"):
    evaluators.get("nope")
  with pytest.raises(ValueError, match="config.data.name='nope'"):
    datasets.get("nope")
