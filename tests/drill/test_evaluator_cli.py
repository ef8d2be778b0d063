"""Bad-input drill of `python -m lla_jax.evaluation {crowdhuman,citypersons,caltech,convert}` (issue 14 item 5).

Every case runs the real command line (one subprocess for all, tests/drill/driver.py) and checks what the user
reads: exit status 2 and a first error line naming the file (and line / entry / field) and the expected form;
never a stack trace. A UTF-8 byte-order mark is accepted and gives the same numbers as the file without it.
"""
import copy
import json
import shutil

import pytest

from tests.drill.common import check_errors, module_drill
from tests.evaluation import caltech_fixtures
from tests.evaluation.test_citypersons import example_b91
from tests.evaluation.test_crowdhuman import example_a9

EVAL = "-m lla_jax.evaluation"


def _odgt(records, ensure_ascii=True):
  return "".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in records)


def _build(tmp):
  """{name: (argv, [substrings of the first error line], exit status)} and the files they read."""
  def put(name, data):
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)

  gt, dt = example_a9()
  g, d = put("gt.odgt", _odgt(gt)), put("dt.odgt", _odgt(dt))
  cgt, cdt = example_b91()
  cg, cd = put("gt.json", json.dumps(cgt)), put("dt.json", json.dumps(cdt))
  ch = lambda gt_path, dt_path: ["crowdhuman", "--gt", gt_path, "--dt", dt_path, "--json"]  # noqa: E731
  cp = lambda gt_path, dt_path: ["citypersons", "--gt", gt_path, "--dt", dt_path, "--json"]  # noqa: E731
  cases = {}

  def mutate(records, change):
    out = copy.deepcopy(records)
    change(out)
    return out

  # CrowdHuman odgt: empty, truncated, encodings, BOM, boxes, IDs.
  cases["odgt empty GT"] = (ch(put("empty.odgt", ""), d), ["empty.odgt", "no records", "one JSON object per line"])
  cases["odgt empty DT"] = (ch(g, put("empty_dt.odgt", "\n\n")), ["empty_dt.odgt", "no records"])
  cases["odgt truncated"] = (ch(put("cut.odgt", _odgt(gt)[:-30]), d),
                             ["cut.odgt:2", "not a JSON object", "one JSON object per line"])
  latin = mutate(gt, lambda r: r[1].update(ID="b\u00e9"))
  cases["odgt latin-1"] = (ch(put("latin1.odgt", _odgt(latin, False).encode("latin-1")), d),
                           ["latin1.odgt:2", "byte 0xE9", "is not UTF-8", "expected UTF-8"])
  cases["odgt UTF-16"] = (ch(put("utf16.odgt", _odgt(gt).encode("utf-16")), d),
                          ["utf16.odgt", "UTF-16 text", "expected UTF-8"])
  cases["odgt UTF-16 no BOM"] = (ch(g, put("utf16le.odgt", _odgt(dt).encode("utf-16-le"))),
                                 ["utf16le.odgt:1", "NUL bytes", "expected UTF-8"])
  cases["odgt NaN box"] = (ch(g, put("nan.odgt", _odgt(dt).replace("[52, 12, 20, 40]", "[NaN, 12, 20, 40]"))),
                           ["nan.odgt:1", "ID 'a'", "dtboxes[1].box", "4 finite numbers"])
  cases["odgt negative width DT"] = (ch(g, put("negw.odgt", _odgt(mutate(dt, lambda r: r[0]["dtboxes"][1]["box"]
                                                                        .__setitem__(2, -20))))),
                                     ["negw.odgt:1", "dtboxes[1].box", "w, h >= 0", "-20"])
  cases["odgt reversed corners GT"] = (ch(put("rev.odgt", _odgt(mutate(gt, lambda r: r[1]["gtboxes"][1]
                                                                       .__setitem__("fbox", [120, 50, -30, -40])))), d),
                                       ["rev.odgt:2", "ID 'b'", "gtboxes[1].fbox", "w, h >= 0"])
  cases["odgt string score"] = (ch(g, put("score.odgt", _odgt(mutate(dt, lambda r: r[1]["dtboxes"][0]
                                                                     .__setitem__("score", "0.85"))))),
                                ["score.odgt:2", "dtboxes[0].score", "expected a number"])
  cases["odgt duplicate GT ID"] = (ch(put("dup.odgt", _odgt(gt + gt[:1])), d),
                                   ["dup.odgt:3", "ID 'a'", "duplicate ID", "GT record 0"])
  cases["odgt duplicate DT ID"] = (ch(g, put("dupdt.odgt", _odgt(dt + dt[1:]))),
                                   ["dupdt.odgt:3", "a second detection record for ID 'b'"])
  cases["odgt unknown DT ID"] = (ch(g, put("unk.odgt", _odgt(mutate(dt, lambda r: r[1].update(ID="c"))))),
                                 ["unk.odgt:2", "ID 'c' is not in the ground truth"])
  cases["odgt line not an object"] = (ch(put("list.odgt", _odgt(gt) + "[1, 2]\n"), d),
                                      ["list.odgt:3", "expected a JSON object, got list"])
  cases["odgt missing file"] = (ch(str(tmp / "nowhere.odgt"), d), ["No such file", "nowhere.odgt"])
  # CityPersons json.
  cases["json missing key"] = (cp(put("nokey.json", json.dumps(mutate(cgt, lambda g_: g_["annotations"][2]
                                                                     .pop("vis_ratio")))), cd),
                               ["nokey.json", "annotations[2] (id 3)", "missing 'vis_ratio'"])
  cases["json no images"] = (cp(put("noimages.json", json.dumps(mutate(cgt, lambda g_: g_.pop("images")))), cd),
                             ["noimages.json", "expected an object with 'images' and 'annotations' lists"])
  cases["json DT missing score"] = (cp(cg, put("noscore.json", json.dumps(mutate(cdt, lambda d_: d_[3]
                                                                              .pop("score"))))),
                                    ["noscore.json", "detection [3]", "missing 'score'"])
  cases["json NaN bbox"] = (cp(put("nan.json", json.dumps(mutate(cgt, lambda g_: g_["annotations"][0]["bbox"]
                                                                 .__setitem__(3, float("nan"))))), cd),
                            ["nan.json", "annotations[0] (id 1)", "'bbox' must be [x, y, w, h]", "finite"])
  cases["json negative width DT"] = (cp(cg, put("negw.json", json.dumps(mutate(cdt, lambda d_: d_[2]["bbox"]
                                                                            .__setitem__(2, -3))))),
                                     ["negw.json", "detection [2]", "w, h >= 0"])
  cases["json duplicate annotation id"] = (cp(put("dupid.json", json.dumps(mutate(
      cgt, lambda g_: g_["annotations"].append(dict(g_["annotations"][0]))))), cd),
      ["dupid.json", "annotations[6] (id 1)", "duplicate annotation id"])
  cases["json duplicate image id"] = (cp(put("dupim.json", json.dumps(mutate(
      cgt, lambda g_: g_["images"].append(dict(g_["images"][0]))))), cd), ["dupim.json", "image id 1 is listed twice"])
  cases["json truncated"] = (cp(put("cut.json", json.dumps(cgt)[:-40]), cd), ["cut.json", "not valid JSON", "line 1"])
  cases["json empty"] = (cp(put("empty.json", b""), cd), ["empty.json", "not valid JSON"])
  cases["json UTF-16"] = (cp(put("utf16.json", json.dumps(cgt).encode("utf-16")), cd),
                          ["utf16.json", "UTF-16 text", "expected UTF-8"])
  # Caltech: bbGt folders, detection folders, frame lists.
  anno = caltech_fixtures.write_gt(tmp / "anno")
  det = caltech_fixtures.write_dt(tmp / "det")
  frames = caltech_fixtures.write_frames(tmp / "frames.txt")
  cal = lambda a, d_, f=frames: ["caltech", "--gt", a, "--dt", d_, "--frames", f, "--json"]  # noqa: E731

  def det_copy(name, rewrite):
    folder = tmp / name
    shutil.copytree(det, folder)
    path = folder / "set06" / "V000.txt"
    path.write_text(rewrite(path.read_text()))
    return str(folder)

  def anno_copy(name, data):
    folder = tmp / name
    shutil.copytree(anno, folder)
    (folder / "set06_V000_I00029.txt").write_bytes(data)
    return str(folder)

  frame29 = (tmp / "anno" / "set06_V000_I00029.txt").read_text()
  cases["caltech NaN detection"] = (cal(anno, det_copy("det_nan", lambda t: t.replace("30 302", "30 nan", 1))),
                                    ["V000.txt:2", "'nan' is not a finite number"])
  cases["caltech negative width"] = (cal(anno, det_copy("det_neg", lambda t: t.replace("302 150 30", "302 150 -30"))),
                                     ["set06/V000.txt", "frame set06_V000_I00029", "negative width or height (x y w h 302 150 -30 60)",
                                      "expected x y w h score with w, h >= 0"])
  cases["caltech truncated detections"] = (cal(anno, det_copy("det_cut", lambda t: t[:-12])),
                                           ["V000.txt:9", "expected 6 numbers (frame+1 x y w h score)"])
  cases["caltech empty bbGt"] = (cal(anno_copy("anno_empty", b""), det),
                                 ["set06_V000_I00029.txt", "empty file", "% bbGt version=3"])
  cases["caltech truncated bbGt"] = (cal(anno_copy("anno_cut", frame29[:-15].encode()), det),
                                     ["set06_V000_I00029.txt:5", "expected 12 fields for bbGt version 3"])
  cases["caltech UTF-16 bbGt"] = (cal(anno_copy("anno_u16", frame29.encode("utf-16")), det),
                                  ["set06_V000_I00029.txt", "UTF-16 text", "expected UTF-8"])
  cases["caltech non-integer bbGt"] = (cal(anno_copy("anno_float", frame29.replace("100 100 41", "100 100 4.5")
                                                     .encode()), det),
                                       ["set06_V000_I00029.txt:2", "field 'w' must be an integer"])
  cases["caltech duplicate frame"] = (cal(anno, det, put("frames2.txt", open(frames).read() + "set06_V000_I00029\n")),
                                      ["frames2.txt:5", "set06_V000_I00029 is listed twice"])
  cases["caltech bad frame name"] = (cal(anno, det, put("frames3.txt", "set06_V000_frame29\n")),
                                     ["frames3.txt:1", "is not a Caltech frame name like"])
  # convert reads through the same readers.
  cases["convert latin-1 odgt"] = (["convert", tmp / "latin1.odgt", tmp / "out.json", "--to", "citypersons"],
                                   ["latin1.odgt:2", "is not UTF-8"])
  cases["convert NaN odgt to coco"] = (["convert", tmp / "nan.odgt", tmp / "out2.json", "--to", "coco"],
                                       ["nan.odgt:1", "4 finite numbers"])
  cases["COCO detections with NaN"] = (ch(g, put("coco.json", json.dumps(
      [{"image_id": "a", "category_id": 1, "bbox": [1, 2, float("nan"), 4], "score": 0.5}]))),
      ["coco.json", "detection [0] bbox", "4 finite numbers"])
  # Accepted: a UTF-8 byte-order mark (Windows editors write one); the numbers must equal the plain file's.
  cases["odgt BOM (accepted)"] = (ch(put("bom_gt.odgt", b"\xef\xbb\xbf" + _odgt(gt).encode()),
                                     put("bom_dt.odgt", b"\xef\xbb\xbf" + _odgt(dt).encode())), None)
  cases["odgt plain (reference)"] = (ch(g, d), None)
  cases["json BOM (accepted)"] = (cp(put("bom.json", b"\xef\xbb\xbf" + json.dumps(cgt).encode()), cd), None)
  cases["json plain (reference)"] = (cp(cg, cd), None)
  cases["caltech BOM bbGt (accepted)"] = (cal(anno_copy("anno_bom", b"\xef\xbb\xbf" + frame29.encode()), det), None)
  cases["caltech plain (reference)"] = (cal(anno, det), None)
  return cases



drill = module_drill(EVAL, _build)


def test_bad_inputs_name_the_file_and_the_expected_form(drill):
  cases, results = drill
  bad = {n: c for n, c in cases.items() if c[1] is not None}
  assert len(bad) >= 30
  assert not check_errors(bad, results, status=2)


@pytest.mark.parametrize("accepted,reference", [("odgt BOM (accepted)", "odgt plain (reference)"),
                                                ("json BOM (accepted)", "json plain (reference)"),
                                                ("caltech BOM bbGt (accepted)", "caltech plain (reference)")])
def test_utf8_bom_is_read_with_the_same_numbers(drill, accepted, reference):
  _, results = drill
  (code, out, err), (ref_code, ref_out, _) = results[accepted], results[reference]
  assert code == ref_code == 0, err
  metrics = json.loads(out.strip().splitlines()[-1])
  assert metrics == json.loads(ref_out.strip().splitlines()[-1])
  assert any(v is not None and v > 0 for v in metrics.values())
