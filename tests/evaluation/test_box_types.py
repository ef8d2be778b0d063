"""Evaluation on the box type of data.box (CrowdDet's eval_mode): odgt.gt_on_box, cityjson.gt_on_box and the
protocols, on a hand-worked image.

One 100x100 image, two persons:
  A  fbox [10, 10, 20, 40]  vbox [10, 10, 20, 15]  hbox [15, 10, 8, 8]
  B  fbox [50, 10, 20, 40]  vbox [50, 35, 20, 15]  hbox [55, 10, 8, 8], head_attr.ignore = 1 (head not visible)
Detections on the visible boxes (0.9 A, 0.8 B) overlap the full boxes with IoU 300 / 800 = 0.375 < 0.5: on
visible boxes both are hits (recall 1), on full boxes both miss (recall 0). Detections on the heads (0.7 A,
0.6 B): A's is a hit; B's head is an ignore region in head mode, so its detection is neither a hit nor a false
positive and P = 1; with A's head alone detected the recall is 1, and would be 0.5 without the head_attr rule. AP and MR are held
against the plain re-statement (tests/reference/evaluation.py) on the GT with each box chosen by hand.
"""
import numpy as np
import pytest

from lla_jax.evaluation import cityjson, crowdhuman, odgt, protocols
from tests.reference import evaluation as reference

A = {"tag": "person", "fbox": [10, 10, 20, 40], "vbox": [10, 10, 20, 15], "hbox": [15, 10, 8, 8],
     "extra": {"ignore": 0}, "head_attr": {"ignore": 0}}
B = {"tag": "person", "fbox": [50, 10, 20, 40], "vbox": [50, 35, 20, 15], "hbox": [55, 10, 8, 8],
     "extra": {"ignore": 0}, "head_attr": {"ignore": 1}}
GT = [{"ID": "im", "width": 100, "height": 100, "gtboxes": [A, B]}]


def dets(*boxes_scores):
  return [{"ID": "im", "width": 100, "height": 100,
           "dtboxes": [{"box": list(b), "score": s, "tag": 1} for b, s in boxes_scores]}]


ON_VISIBLE = dets(([10, 10, 20, 15], 0.9), ([50, 35, 20, 15], 0.8))
ON_HEADS = dets(([15, 10, 8, 8], 0.7), ([55, 10, 8, 8], 0.6))


def hand_gt(boxes):
  """The GT with each box's fbox set by hand: [(box, ignore)]."""
  return [{"ID": "im", "gtboxes": [{"tag": "person", "fbox": b, "extra": {"ignore": int(i)}} for b, i in boxes]}]


@pytest.mark.parametrize("box,dt,want_recall", [("full", ON_VISIBLE, 0.0), ("visible", ON_VISIBLE, 1.0),
                                                ("head", ON_HEADS, 1.0)])
def test_crowdhuman_on_box_types(box, dt, want_recall):
  r = crowdhuman.evaluate(odgt.gt_on_box(GT, box), dt)
  assert r["Recall"] == pytest.approx(want_recall)
  by_hand = {"full": [(A["fbox"], 0), (B["fbox"], 0)], "visible": [(A["vbox"], 0), (B["vbox"], 0)],
             "head": [(A["hbox"], 0), (B["hbox"], 1)]}[box]
  ref = reference.crowdhuman(hand_gt(by_hand), dt)
  for key in ("AP", "Recall", "MR"):
    assert r[key] == pytest.approx(ref[key], nan_ok=True), key


def test_head_attr_ignore_makes_an_invisible_head_an_ignore_region():
  """Only A's head detected: head mode counts one person (recall 1); B's head counted as a person would
  halve the recall."""
  only_a = dets(([15, 10, 8, 8], 0.7))
  assert crowdhuman.evaluate(odgt.gt_on_box(GT, "head"), only_a)["Recall"] == pytest.approx(1.0)
  no_rule = reference.crowdhuman(hand_gt([(A["hbox"], 0), (B["hbox"], 0)]), only_a)
  assert no_rule["Recall"] == pytest.approx(0.5)


def test_gt_on_box_leaves_the_input_and_full_alone():
  assert odgt.gt_on_box(GT, "full") == GT
  out = odgt.gt_on_box(GT, "head")
  assert out[0]["gtboxes"][1]["extra"]["ignore"] == 1 and out[0]["gtboxes"][1]["fbox"] == B["hbox"]
  assert GT[0]["gtboxes"][1]["extra"]["ignore"] == 0 and GT[0]["gtboxes"][1]["fbox"] == [50, 10, 20, 40]
  with pytest.raises(ValueError, match="box type 'torso'"):
    odgt.gt_on_box(GT, "torso")
  with pytest.raises(ValueError, match=r"GT record 1 \(ID 'im'\), gtboxes\[0\]: no 'hbox'"):
    odgt.gt_on_box([{"ID": "im", "gtboxes": [{"tag": "person", "fbox": [0, 0, 1, 1]}]}], "head")


def test_citypersons_visible_matches_vis_bbox_with_the_full_box_setups(tmp_path):
  """cityjson.gt_on_box: bbox <- vis_bbox, height / vis_ratio of the full box (the same people per setup)."""
  gt = cityjson.citypersons_gt_from_odgt([dict(GT[0], gtboxes=[dict(A, fbox=[10, 10, 20, 60])])])
  vis = cityjson.gt_on_box(gt, "visible")
  a, v = gt["annotations"][0], vis["annotations"][0]
  assert v["bbox"] == a["vis_bbox"] == [10.0, 10.0, 20.0, 15.0]
  assert (v["height"], v["vis_ratio"]) == (a["height"], a["vis_ratio"]) == (60.0, pytest.approx(0.25))
  assert gt["annotations"][0]["bbox"] == [10.0, 10.0, 20.0, 60.0]
  with pytest.raises(ValueError, match="full and visible boxes only"):
    cityjson.gt_on_box(gt, "head")


def test_protocol_writes_the_gt_it_evaluated(tmp_path):
  """The CrowdHuman protocol on data.box 'visible': metrics on the visible boxes and the GT written next to
  the detections, so that the detection file can be re-evaluated alone."""
  gt_path = odgt.write(str(tmp_path / "gt.odgt"), GT)
  boxes = np.array([[10, 10, 30, 25], [50, 35, 70, 50]], np.float64)
  inp = protocols.EvalInput(results={0: (boxes, np.array([0.9, 0.8]))},
                            records=[{"ID": "im", "width": 100, "height": 100, "index": 0}],
                            info={"gt_odgt": gt_path}, data_name="synthetic_crowds", gt_format="odgt", split="val",
                            step=3, det_dir=str(tmp_path), box="visible")
  metrics, _ = protocols.crowdhuman(inp)
  assert metrics["Recall"] == pytest.approx(1.0)
  again = crowdhuman.evaluate(odgt.load(str(tmp_path / "val_gt_visible.odgt")), odgt.load(metrics["detections"]))
  assert (again["AP"], again["Recall"]) == (pytest.approx(metrics["AP"]), pytest.approx(1.0))
  assert set(inp.crowdhuman) == {"gt", "dt", "result"}
