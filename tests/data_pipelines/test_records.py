"""GT odgt lines: writing, reading, validation errors and the training box conversion."""
import json

import numpy as np
import pytest

from data_pipelines import records


def _line():
  return records.odgt_line("273271,c9db000d5146c15", fbox=[[-5, 10, 20, 50], [30, 0, 60, 40]],
                           vbox=[[0, 10, 15, 50], [30, 0, 60, 40]], hbox=[[2, 10, 6, 7], [30, 0, 60, 40]],
                           tags=["person", "mask"], ignore=[False, True], height=100, width=80)


def test_odgt_line_schema():
  line = _line()
  assert line["ID"] == "273271,c9db000d5146c15" and (line["height"], line["width"]) == (100, 80)
  b0, b1 = line["gtboxes"]
  assert b0 == {"tag": "person", "fbox": [-5.0, 10.0, 20.0, 50.0], "vbox": [0.0, 10.0, 15.0, 50.0],
                "hbox": [2.0, 10.0, 6.0, 7.0], "extra": {"ignore": 0, "box_id": 0}, "head_attr": {}}
  assert b1["tag"] == "mask" and b1["extra"] == {"ignore": 1, "box_id": 1}
  with pytest.raises(ValueError, match="disagree in length"):
    records.odgt_line("x", [[0, 0, 1, 1]], [], [[0, 0, 1, 1]], ["person"], [False])


def test_write_read_round_trip(tmp_path):
  path = tmp_path / "sub" / "gt.odgt"
  empty = records.odgt_line("img2", np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)), [], [])
  records.write_odgt(path, [_line(), empty])
  text = path.read_text().splitlines()
  assert len(text) == 2 and json.loads(text[0])["ID"] == "273271,c9db000d5146c15"
  back = records.read_odgt(path)
  assert back == [_line(), empty]
  assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_read_skips_blank_lines(tmp_path):
  path = tmp_path / "gt.odgt"
  path.write_text(json.dumps(_line()) + "\n\n" + json.dumps({"ID": "b", "gtboxes": []}) + "\n")
  assert [r["ID"] for r in records.read_odgt(path)] == ["273271,c9db000d5146c15", "b"]


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"gtboxes": []}', "missing or non-string 'ID'"),
    ('{"ID": "a", "gtboxes": {}}', "'gtboxes' must be a list"),
    ('{"ID": "a", "gtboxes": [{"fbox": [0, 0, 1, 1]}]}', r"gtboxes\[0\]\): missing or non-string 'tag'"),
    ('{"ID": "a", "gtboxes": [{"tag": "person"}]}', "missing 'fbox'"),
    ('{"ID": "a", "gtboxes": [{"tag": "person", "fbox": [0, 0, 1]}]}', "'fbox' must be 4 finite numbers"),
    ('{"ID": "a", "gtboxes": [{"tag": "person", "fbox": [0, 0, 1, 1], "hbox": [0, "x", 1, 1]}]}',
     "'hbox' must be 4 finite numbers"),
    ('{"ID": "a", "gtboxes": [{"tag": "person", "fbox": [0, 0, 1, 1], "extra": 3}]}', "'extra' must be an object"),
])
def test_read_errors_name_file_and_line(tmp_path, bad, message):
  path = tmp_path / "bad.odgt"
  path.write_text(json.dumps(_line()) + "\n" + bad + "\n")
  with pytest.raises(ValueError, match=message) as e:
    records.read_odgt(path)
  assert f"{path}:2" in str(e.value)


def test_gt_arrays_training_rule():
  gt = records.gt_arrays(_line())
  np.testing.assert_array_equal(gt["fbox"], [[-5, 10, 15, 60], [30, 0, 90, 40]])  # xyxy, x2 = x + w
  np.testing.assert_array_equal(gt["vbox"], [[0, 10, 15, 60], [30, 0, 90, 40]])
  np.testing.assert_array_equal(gt["hbox"], [[2, 10, 8, 17], [30, 0, 90, 40]])
  np.testing.assert_array_equal(gt["ignore"], [False, True])
  assert gt["tag"] == ["person", "mask"] and gt["fbox"].dtype == np.float32
  # Missing vbox/hbox fall back to fbox; ignore needs extra.ignore, the tag alone does not count.
  line = {"ID": "a", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4], "extra": {"ignore": 1}},
                                 {"tag": "person", "fbox": [1, 2, 3, 4]}]}
  gt = records.gt_arrays(line)
  np.testing.assert_array_equal(gt["hbox"], [[1, 2, 4, 6]] * 2)
  np.testing.assert_array_equal(gt["ignore"], [True, False])
  bad = {"ID": "img7", "gtboxes": [{"tag": "mask", "fbox": [1, 2, 3, 4], "extra": {"ignore": 0}}]}
  with pytest.raises(ValueError, match=r"img7, gtboxes\[0\]: tag 'mask' without extra.ignore = 1"):
    records.gt_arrays(bad)
