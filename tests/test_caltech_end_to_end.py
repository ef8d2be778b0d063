"""Caltech through the whole suite: synthetic crowds written as a raw Caltech tree (Norpix .seq videos, .vbb
annotations, new-annotation bbGt files, in the official formats), `python -m data_pipelines.prepare caltech`,
the tf.data pipeline on the prepared data, a few training steps of a tiny LLA.FCOS, `--mode=eval` with the
Caltech protocol, and its metrics file and per-video detection files read back by the evaluator's command line
and by the plain re-statement to the same numbers."""
import json
import os

import jax
import numpy as np
import pytest

import data_pipelines
from configs import alfnet_r50_2s_caltech, lla_r50_caltech
from data_pipelines import caltech, caltech_io, prepare, synthetic
from lla_jax import cli
from lla_jax.evaluation import caltech as caltech_eval
from lla_jax.evaluation import caltech_files, protocols
from lla_jax.evaluation.__main__ import main as evaluation_main
from tests.data_pipelines.caltech_writers import jpeg, write_seq, write_vbb
from tests.reference import caltech_reference

TRAIN_FRAMES, TEST_FRAMES = 90, 120   # set00/V000 and set06/V000: train 1x 3, train 10x 30, test 4 frames
POOL = 6                              # distinct rendered training images, reused along the video


def _vbb_objects(ex, next_id, labels):
  """(id, pos, posv, occl) per box of a rendered example; ignore regions become 'people' (a training ignore)."""
  objs = []
  for fbox, vbox, ignore in zip(ex["fbox"], ex["vbox"], ex["ignore"]):
    occluded = not ignore and np.abs(np.subtract(vbox, fbox)).max() > 0.5
    labels.append("people" if ignore else "person")
    objs.append((next_id + len(objs), list(fbox), list(vbox) if occluded else [0, 0, 0, 0], int(occluded)))
  return objs


def write_synthetic_tree(root):
  """A raw Caltech tree of synthetic crowds at 640x480: the sampled frames are rendered images (other frames a
  small filler JPEG the builder never decodes), their boxes in the .vbb files, and the test frames also as new
  annotations (caltech_io.synthetic_bbgt). Returns {frame name: rendered example} of the sampled frames."""
  filler = jpeg()
  rendered = {}
  for s, n, split, sampled in (("set00", TRAIN_FRAMES, "train", lambda f: f % 3 == 2),
                               ("set06", TEST_FRAMES, "val", lambda f: f % 30 == 29)):
    pool = list(synthetic.render_examples(split, range(POOL if split == "train" else TEST_FRAMES // 30), 0,
                                          caltech.HEIGHT, caltech.WIDTH))
    frames, labels, objects = [], [], {}
    for f in range(n):
      if not sampled(f):
        frames.append(filler)
        continue
      ex = pool[(f // 3) % POOL] if split == "train" else pool[f // 30]
      frames.append(ex["jpeg"])
      objects[f] = _vbb_objects(ex, len(labels) + 1, labels)
      rendered[caltech_io.frame_name(int(s[3:]), 0, f)] = ex
    os.makedirs(root / s)
    os.makedirs(root / "annotations" / s)
    write_seq(root / s / "V000.seq", frames, width=caltech.WIDTH, height=caltech.HEIGHT)
    write_vbb(root / "annotations" / s / "V000.vbb", n, labels, objects)
  os.makedirs(root / "anno_test_1xnew")
  for name, ex in rendered.items():
    if name.startswith("set06"):
      (root / "anno_test_1xnew" / f"{name}.txt").write_text(caltech_io.synthetic_bbgt(ex))
  return rendered


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, prepare's summary, its printed last line, rendered examples)."""
  root = tmp_path_factory.mktemp("caltech_e2e")
  rendered = write_synthetic_tree(root / "raw")
  summary = prepare.main(["caltech", "--manual_dir", str(root / "raw"), "--data_dir", str(root / "data")])
  return str(root / "data"), summary, rendered


def tiny_config(data_dir):
  c = lla_r50_caltech.get_config()
  d = c.data
  d.data_dir = data_dir
  d.train_split = "train"
  d.min_size, d.max_size, d.pad_size = 96, 128, (128, 128)
  d.num_parallel_calls = 1
  d.shuffle_buffer = 8
  m = c.model
  m.backbone.depth, m.backbone.layout, m.backbone.norm, m.backbone.freeze_at, m.backbone.width = 18, "torchvision", \
      "bn", 0, 8
  m.fpn.channels = m.head.channels = 16
  m.head.num_convs, m.head.gn_groups = 1, 8
  tr = c.train
  tr.batch_size, tr.reference_batch_size, tr.steps, tr.warmup_steps, tr.lr_steps = 8, 8, 2, 1, (100,)
  tr.optimizer, tr.base_lr = "adam", 1e-3
  tr.log_every = tr.checkpoint_every = 2
  tr.eval_after_train = False
  tr.max_pictures = 1
  c.test.batch_size = 8
  c.test.score_thresh = 0.0           # an untrained head scores ~0.01: keep its detections
  return c


def test_prepare_prints_counts_and_warns_about_official_ones(prepared, capsys):
  _, summary, _ = prepared
  assert summary["images"] == {"train": 3, "train_10x": 30, "test": 4}
  assert summary["boxes"]["test"] == sum(len(ex["fbox"]) for n, ex in prepared[2].items() if n.startswith("set06"))
  assert summary["ignore"]["test"] == sum(int(ex["ignore"].sum()) for n, ex in prepared[2].items()
                                          if n.startswith("set06"))
  assert "train_10x: images = 30, the official files give 42782" in summary["warnings"]
  assert "test: images = 4, the official files give 4024" in summary["warnings"]
  assert summary["statistics"]["test"]["source"] == "new" and summary["statistics"]["train"]["source"] == "vbb"
  assert os.path.isdir(summary["gt"]["test"]) is False and summary["gt"]["test"].endswith("test_gt.odgt")


def test_pipeline_gives_batches_and_the_caltech_gt(prepared):
  data_dir, _, rendered = prepared
  c = tiny_config(data_dir)
  it, info = data_pipelines.create_dataset(c.data, "test", 8, train=False, seed=0)
  names = [r["ID"] for r in info["records"]]
  assert names == [f"set06_V000_I{f:05d}" for f in (29, 59, 89, 119)]
  assert all((r["width"], r["height"]) == (640, 480) for r in info["records"])
  assert open(info["gt_caltech_frames"]).read().split() == names
  for name in names:  # the stored bbGt text of each frame, as the new annotations give it
    assert open(os.path.join(info["gt_caltech"], name + ".txt")).read() == caltech_io.synthetic_bbgt(rendered[name])
  batch = next(it)
  assert batch["image"].shape == (8, 128, 128, 3) and batch["image_id"].tolist() == [0, 1, 2, 3, -1, -1, -1, -1]
  assert batch["orig_size"][0].tolist() == [480, 640] and batch["image_size"][0].tolist() == [96, 128]
  train_it, _ = data_pipelines.create_dataset(c.data, "train", 8, train=True, seed=0)
  assert next(train_it)["gt_valid"].any()
  # ALFNet's Caltech config on the same data: the full 480x640 frame padded to data.eval_size.
  a = alfnet_r50_2s_caltech.get_config()
  a.data.data_dir, a.data.num_parallel_calls = data_dir, 1
  it, _ = data_pipelines.create_dataset(a.data, "test", 4, train=False, seed=0)
  assert next(it)["image"].shape == (4, 480, 640, 3)
  a.data.train_split = "train"
  it, info = data_pipelines.create_dataset(a.data, "train", 2, train=True, seed=0)   # the ALFNet augmentation
  assert next(it)["image"].shape == (2, 480, 640, 3) and info["num_train_images"] == 3


def _flat(setups):
  return {name: mr for by_iou in setups.values() for name, mr in by_iou.items()}


def test_protocol_writes_per_video_files_the_cli_reads_back(prepared, tmp_path, capsys):
  """The Caltech protocol on hand-made results: per-video files, metrics = the CLI's = the plain re-statement."""
  data_dir, _, rendered = prepared
  _, info = data_pipelines.create_dataset(tiny_config(data_dir).data, "test", 8, train=False, seed=0)
  rng = np.random.default_rng(0)
  results = {}
  for i, rec in enumerate(info["records"]):
    ex = rendered[rec["ID"]]
    b = np.asarray(ex["fbox"], np.float64)[~ex["ignore"]]
    xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1) + rng.normal(0, 3, (len(b), 4))
    xyxy = np.concatenate([xyxy, [[10, 20, 40, 100], [300, 200, 330.123456789, 270]]])
    results[i] = (xyxy, rng.random(len(xyxy)))
  results[3] = (np.zeros((0, 4)), np.zeros(0))     # a frame without detections
  inp = protocols.EvalInput(results, info["records"], info, "caltech", "caltech_bbgt", "test", 7, str(tmp_path))
  metrics, curves = protocols.caltech(inp)
  assert metrics["detections"] == str(tmp_path / "test_step7")
  assert os.listdir(tmp_path / "test_step7") == ["set06"] and os.listdir(tmp_path / "test_step7/set06") == ["V000.txt"]
  rows = np.loadtxt(tmp_path / "test_step7/set06/V000.txt", ndmin=2)
  assert sorted(set(rows[:, 0].astype(int))) == [30, 60, 90] and len(rows) == sum(len(r[1]) for r in results.values())
  flat = _flat(metrics["setups"])
  assert set(flat) == set(caltech_eval.SETUPS) and set(metrics["setups"]) == {"0.5", "0.25", "0.75"}
  assert metrics["MR"] == flat["Reasonable"] and metrics["MR_75"] == flat["Overlap=75"] and 0 < metrics["MR"] < 1
  assert flat["Scale=near"] is None                       # dbEval's NaN (every GT ignored, detections kept)
  assert set(curves) == set(protocols.CALTECH_CURVES)
  code = evaluation_main(["caltech", "--gt", info["gt_caltech"], "--dt", metrics["detections"], "--frames",
                          info["gt_caltech_frames"], "--json"])
  assert code == 0
  assert json.loads(capsys.readouterr()[0].strip().splitlines()[-1]) == flat
  slow = caltech_reference.evaluate(info["gt_caltech"], metrics["detections"], caltech_files.load_frames(
      info["gt_caltech_frames"]))
  for name, mr in flat.items():
    assert (mr is None and np.isnan(slow[name]["MR"])) or mr == slow[name]["MR"], name
  table = "\n".join(protocols.caltech_table(metrics))
  assert "Reasonable" in table and "Overlap=75" in table and "n/a" in table


@pytest.mark.slow
def test_train_then_mode_eval_on_caltech(prepared, tmp_path, capsys):
  data_dir = prepared[0]
  c = tiny_config(data_dir)
  workdir = str(tmp_path / "w")
  with jax.default_prng_impl("unsafe_rbg"):   # threefry init compiles ~8x slower on CPU
    cli.run(c, workdir, "train")
    metrics = cli.run(c, workdir, "eval")     # --mode=eval: restore the latest checkpoint, predict, evaluate
  saved = json.load(open(os.path.join(workdir, "eval_metrics.json")))
  assert saved["protocol"] == "caltech" and saved["step"] == 2 and saved["num_images"] == 4
  assert saved["detections"] == os.path.join(workdir, "detections", "test_step2")
  assert saved["MR"] == metrics["MR"] == saved["setups"]["0.5"]["Reasonable"]
  assert os.path.exists(os.path.join(workdir, "eval_table_step2.txt"))
  assert os.path.exists(os.path.join(workdir, "mr_fppi_step2.png"))
  video = os.path.join(saved["detections"], "set06", "V000.txt")
  rows = np.loadtxt(video, ndmin=2)
  assert len(rows) > 0 and set(rows[:, 0].astype(int)) <= {30, 60, 90, 120}
  capsys.readouterr()
  code = evaluation_main(["caltech", "--gt", saved["gt"], "--dt", saved["detections"], "--frames", saved["frames"],
                          "--json"])
  assert code == 0
  assert json.loads(capsys.readouterr()[0].strip().splitlines()[-1]) == _flat(saved["setups"])


def test_prepare_builds_the_splits_whose_videos_are_there(tmp_path, capsys):
  """Only test videos in the manual_dir: the test split is built and checked, the train splits are named as not
  built; an annotation source of another data set is refused before anything is built."""
  os.makedirs(tmp_path / "raw" / "set07")
  os.makedirs(tmp_path / "raw" / "annotations" / "set07")
  write_seq(tmp_path / "raw" / "set07" / "V001.seq", [jpeg(seed=i) for i in range(61)])
  write_vbb(tmp_path / "raw" / "annotations" / "set07" / "V001.vbb", 61, ["person"],
            {59: [(1, [10, 5, 20, 40], [0, 0, 0, 0], 0)]})
  with pytest.raises(SystemExit):
    prepare.main(["caltech", "--manual_dir", str(tmp_path / "raw"), "--data_dir", str(tmp_path / "d"),
                  "--annotations", "json"])
  assert "caltech: --annotations must be one of auto, vbb, new, got 'json'" in capsys.readouterr().err
  summary = prepare.main(["caltech", "--manual_dir", str(tmp_path / "raw"), "--data_dir", str(tmp_path / "d"),
                          "--annotations", "vbb"])
  assert summary["images"] == {"test": 2} and summary["boxes"] == {"test": 1}
  assert {"train: not built (the manual_dir holds none of its files)",
          "train_10x: not built (the manual_dir holds none of its files)"} <= set(summary["warnings"])
  assert json.loads(capsys.readouterr()[0].strip().splitlines()[-1])["images"] == {"test": 2}
