"""Bad-input drill of `python -m data_pipelines.prepare {crowdhuman,citypersons}` (issue 14 item 5): annotation
files truncated, empty, in another encoding, with NaN or reversed boxes, duplicate IDs, a JPEG cut in half, a
CityPersons json missing a key. Each case builds from a tiny official-format tree (tests/data_pipelines/fixtures.py)
with one file spoiled, running the real command (one subprocess for all, tests/drill/driver.py): exit status 1
and a first error line naming the file (and line / object) and the expected form; never a stack trace. A UTF-8
byte-order mark on the odgt is accepted: the build succeeds with the same statistics as without it.
"""
import json
import shutil


from tests.data_pipelines import fixtures
from tests.drill.common import check_errors, module_drill

PREPARE = "-m data_pipelines.prepare"


def _cases(tmp):
  ch, cp = tmp / "ch", tmp / "cp"
  fixtures.write_crowdhuman(ch)
  fixtures.write_citypersons(cp, mat_source=False)
  val = (ch / "annotation_val.odgt").read_text()
  first_val = fixtures.CH_VAL[0][0]
  cases = {}

  def crowdhuman(name, change=None, data=None, expected=None, *more):
    root = tmp / name.replace(" ", "_")
    shutil.copytree(ch, root)
    if data is not None:
      (root / "annotation_val.odgt").write_bytes(data)
    if change is not None:
      change(root)
    cases[name] = (["crowdhuman", "--manual_dir", root, "--data_dir", tmp / "out" / root.name, *more], expected)

  def citypersons(name, change, expected):
    root = tmp / name.replace(" ", "_")
    shutil.copytree(cp, root)
    path = next((root / "gtBboxCityPersons" / "val").glob("*/frankfurt_*.json"))
    change(path)
    cases[name] = (["citypersons", "--manual_dir", root, "--data_dir", tmp / "out" / root.name], expected)

  def edit_json(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))

  crowdhuman("odgt truncated", data=val[:-25].encode(),
             expected=["annotation_val.odgt:2", "not valid JSON", "one JSON object per line"])
  crowdhuman("odgt empty", data=b"", expected=["annotation_val.odgt", "no images", "one JSON object per line"])
  crowdhuman("odgt latin-1", data=val.replace(first_val, first_val + "\u00e9").encode("latin-1"),
             expected=["annotation_val.odgt:1", "is not UTF-8", "expected UTF-8"])
  crowdhuman("odgt UTF-16", data=val.encode("utf-16"),
             expected=["annotation_val.odgt", "UTF-16 text", "expected UTF-8"])
  crowdhuman("odgt NaN box", data=val.replace("[20, 10, 16, 36]", "[20, NaN, 16, 36]", 1).encode(),
             expected=["annotation_val.odgt:1", "non-finite number NaN"])
  crowdhuman("odgt reversed box", data=val.replace("[20, 10, 16, 36]", "[36, 46, -16, -36]", 1).encode(),
             expected=["annotation_val.odgt:1", "gtboxes[0]", "'fbox' must be [x, y, w, h] with w, h >= 0"])
  crowdhuman("odgt duplicate ID", data=(val + val.splitlines()[0] + "\n").encode(),
             expected=["annotation_val.odgt:3", f"ID {first_val} occurs twice"])
  crowdhuman("odgt missing fbox", data=val.replace('"fbox"', '"box"', 1).encode(),
             expected=["annotation_val.odgt:1", "gtboxes[0]", "missing 'fbox'"])

  def cut_jpeg(root):
    path = fixtures.ch_image_path(root, first_val)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])

  crowdhuman("JPEG cut in half", change=cut_jpeg,
             expected=["annotation_val.odgt:1", f"image {first_val}", ".jpg) cannot be decoded",
                       "expected a whole JPEG or PNG", "--skip_corrupt"])
  crowdhuman("image missing", change=lambda root: fixtures.ch_image_path(root, first_val) and
             __import__("os").remove(fixtures.ch_image_path(root, first_val)),
             expected=["annotation_val.odgt:1", f"no image {first_val}.jpg"])
  crowdhuman("odgt BOM (accepted)", data=b"\xef\xbb\xbf" + val.encode())
  crowdhuman("odgt plain (reference)")

  citypersons("json missing objects", lambda p: edit_json(p, lambda d: d.pop("objects")),
              ["gtBboxCityPersons.json", "expected an object with 'imgHeight', 'imgWidth' and an 'objects' list"])
  citypersons("json missing bboxVis", lambda p: edit_json(p, lambda d: d["objects"][0].pop("bboxVis")),
              ["gtBboxCityPersons.json: objects[0]", "'bboxVis' must be [x, y, w, h]"])
  citypersons("json missing imgHeight", lambda p: edit_json(p, lambda d: d.pop("imgHeight")),
              ["gtBboxCityPersons.json", "'imgHeight' and 'imgWidth' must be positive integers"])
  citypersons("json NaN bbox", lambda p: edit_json(p, lambda d: d["objects"][0]["bbox"].__setitem__(0, float("nan"))),
              ["gtBboxCityPersons.json: objects[0]", "expected 10 finite numbers"])
  citypersons("json reversed bbox", lambda p: edit_json(p, lambda d: d["objects"][0]["bbox"].__setitem__(2, -30)),
              ["gtBboxCityPersons.json: objects[0]", "w and h must be >= 0", "w -30"])
  citypersons("json truncated", lambda p: p.write_text(p.read_text()[:-20]),
              ["gtBboxCityPersons.json", "not valid JSON"])
  citypersons("json UTF-16", lambda p: p.write_bytes(p.read_text().encode("utf-16")),
              ["gtBboxCityPersons.json", "UTF-16 text", "expected UTF-8"])
  return cases


drill = module_drill(PREPARE, _cases)


def test_bad_official_files_name_the_file_and_the_expected_form(drill):
  cases, results = drill
  assert not check_errors({n: c for n, c in cases.items() if c[1] is not None}, results, status=1)


def test_odgt_with_a_bom_builds_the_same_data(drill):
  _, results = drill
  (code, out, err), (ref_code, ref_out, _) = results["odgt BOM (accepted)"], results["odgt plain (reference)"]
  assert code == ref_code == 0, err[-3000:]
  summary, reference = (json.loads(o.strip().splitlines()[-1]) for o in (out, ref_out))
  for key in ("images", "boxes", "ignore", "max_boxes", "mean_boxes"):
    assert summary[key] == reference[key], key
  assert summary["images"]["val"] == len(fixtures.CH_VAL)
