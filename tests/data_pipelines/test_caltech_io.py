"""Caltech raw-file readers: .seq / .vbb / bbGt text written here in the official formats and read back, the
toolbox's 8- vs 16-byte record layouts, and bad input naming the file and frame, field or line."""
import numpy as np
import pytest

from data_pipelines import caltech_io
from lla_jax.evaluation import InputError, caltech
from tests.data_pipelines.caltech_writers import jpeg, seq_bytes, write_seq, write_vbb


@pytest.fixture(scope="module")
def frames():
  return [jpeg(seed=i, value=40 * i) for i in range(5)]


@pytest.mark.parametrize("extra,num_frames", [(16, None), (8, None), (16, 0), (8, 0)])
def test_seq_round_trip(tmp_path, frames, extra, num_frames):
  seq = caltech_io.SeqFile(write_seq(tmp_path / "V000.seq", frames, extra=extra, num_frames=num_frames, fps=29.97))
  assert len(seq) == 5 and seq.extra == extra
  assert (seq.width, seq.height, seq.image_format, seq.fps) == (64, 48, 201, 29.97)
  for i in (4, 0, 2):  # any order
    assert seq.frame(i) == frames[i]
    assert caltech_io.jpeg_size(seq.frame(i), "x") == (48, 64)
  assert seq.timestamp(3) == pytest.approx(3 / 29.97, abs=1e-3)
  with pytest.raises(IndexError, match="frame 5 out of range"):
    seq.frame(5)


def test_seq_bad_input(tmp_path, frames):
  data = seq_bytes(frames)
  (tmp_path / "cut.seq").write_bytes(data[:-100])
  with pytest.raises(ValueError, match=r"cut.seq: truncated or corrupt at frame 4"):
    caltech_io.SeqFile(tmp_path / "cut.seq")
  (tmp_path / "header.seq").write_bytes(data[:500])
  with pytest.raises(ValueError, match=r"header.seq: truncated header"):
    caltech_io.SeqFile(tmp_path / "header.seq")
  (tmp_path / "magic.seq").write_bytes(seq_bytes(frames, magic=0xBEEF))
  with pytest.raises(ValueError, match=r"magic.seq: not a Norpix .seq file"):
    caltech_io.SeqFile(tmp_path / "magic.seq")
  (tmp_path / "raw.seq").write_bytes(seq_bytes(frames, image_format=100))
  with pytest.raises(ValueError, match=r"imageFormat 100"):
    caltech_io.SeqFile(tmp_path / "raw.seq")
  (tmp_path / "size.seq").write_bytes(seq_bytes(frames, header_size=512))
  with pytest.raises(ValueError, match=r"header size 512"):
    caltech_io.SeqFile(tmp_path / "size.seq")
  bad = list(frames)
  bad[2] = b"\x89PNG" + bytes(300)
  seq = caltech_io.SeqFile(write_seq(tmp_path / "png.seq", bad))
  assert seq.frame(1) == frames[1]
  with pytest.raises(ValueError, match=r"png.seq: frame 2 is not a JPEG"):
    seq.frame(2)
  broken = frames[0][:200] + bytes(100) + b"\xff\xd9"
  with pytest.raises(ValueError, match=r"where: the JPEG cannot be decoded"):
    caltech_io.jpeg_size(broken, "where")


def test_vbb_round_trip_and_bbgt_export(tmp_path):
  path = write_vbb(tmp_path / "V000.vbb", 4, ["person", "people", "person?", "person-fa"], {
      1: [(1, [10.4, 20.5, 30, 60], [0, 0, 0, 0], 0), (2, [100, 20, 30, 60], [100, 20, 30, 30], 1)],
      3: [(3, [-1.5, 2, 3, 4], [0, 0, 0, 0], 0)]})
  a = caltech_io.read_vbb(path)
  assert a["num_frames"] == 4 and a["labels"] == ["person", "people", "person?", "person-fa"]
  assert a["frames"][0]["label"] == [] and a["frames"][2]["pos"].shape == (0, 4)
  f1 = a["frames"][1]
  assert f1["label"] == ["person", "people"] and f1["id"].tolist() == [1, 2]
  np.testing.assert_array_equal(f1["pos"], [[10.4, 20.5, 30, 60], [100, 20, 30, 60]])
  np.testing.assert_array_equal(f1["posv"][1], [100, 20, 30, 30])
  assert f1["occl"].tolist() == [0, 1]
  text = caltech_io.vbb_frame_bbgt(f1)  # round(): halves away from zero, as MATLAB
  assert text == ("% bbGt version=3\nperson 10 21 30 60 0 0 0 0 0 0 0\n"
                  "people 100 20 30 60 1 100 20 30 30 0 0\n")
  assert caltech_io.vbb_frame_bbgt(a["frames"][3]).splitlines()[1] == "person? -2 2 3 4 0 0 0 0 0 0 0"


def test_vbb_bad_input(tmp_path):
  path = write_vbb(tmp_path / "nolbl.vbb", 2, ["person"], {}, drop_field="objLbl")
  with pytest.raises(ValueError, match=r"nolbl.vbb: the struct A has no field 'objLbl'"):
    caltech_io.read_vbb(path)
  path = write_vbb(tmp_path / "noposv.vbb", 2, ["person"], {1: [(1, [1, 2, 3, 4], [0, 0, 0, 0], 0)]},
                   drop_field="posv")
  with pytest.raises(ValueError, match=r"noposv.vbb: frame 1 \(objLists\{2\}\) has no field 'posv'"):
    caltech_io.read_vbb(path)
  (tmp_path / "text.vbb").write_text("not a mat file")
  with pytest.raises(ValueError, match=r"text.vbb: not a MATLAB MAT-file"):
    caltech_io.read_vbb(tmp_path / "text.vbb")


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_bbgt_versions(tmp_path, version):
  fields = {0: 10, 1: 10, 2: 11, 3: 12}[version]
  row = "person 1 2 3 4 1 1 2 3 2 1 45".split()[:fields]
  (tmp_path / "a.txt").write_text(f"% bbGt version={version}\n{' '.join(row)}\n\n")
  o = caltech_io.read_bbgt(tmp_path / "a.txt")
  assert o["label"] == ["person"] and o["bb"].tolist() == [[1, 2, 3, 4]] and o["bbv"].tolist() == [[1, 2, 3, 2]]
  assert o["ign"].tolist() == [1 if version >= 2 else 0] and o["ang"].tolist() == [45 if version == 3 else 0]
  (tmp_path / "b.txt").write_text(f"% bbGt version={version}\n{' '.join(row + ['0'])}\n")
  with pytest.raises(InputError, match=rf"b.txt:2: expected {fields} fields"):
    caltech_io.read_bbgt(tmp_path / "b.txt")
  (tmp_path / "c.txt").write_text("% bbGt version=7\n")
  with pytest.raises(InputError, match=r"c.txt:1: expected the header"):
    caltech_io.read_bbgt(tmp_path / "c.txt")


def test_bbgt_writer_round_trip(tmp_path):
  text = caltech_io.bbgt_text(["person", "ignore"], [[1.5, 2, 3, 4], [0, 0, 10, 10]], [1, 0],
                              [[1, 2, 3, 2], [0, 0, 0, 0]], [0, 1])
  o = caltech_io.parse_bbgt(text)
  assert o["bb"].tolist() == [[2, 2, 3, 4], [0, 0, 10, 10]] and o["ign"].tolist() == [0, 1]


def test_rotated_gt_becomes_the_ellipse_extent():
  bb = np.array([[100.0, 100, 40, 100], [100, 100, 40, 100], [100, 100, 40, 100]])
  ex = caltech.extents(bb, np.array([0.0, 90, 360 + 180]))
  np.testing.assert_array_equal(ex[0], bb[0])
  np.testing.assert_allclose(ex[1], [70, 130, 100, 40])  # a quarter turn: w and h swap about the centre
  np.testing.assert_allclose(ex[2], bb[2])


def test_sampled_frames():
  assert caltech_io.sampled_frames(61 * 30 - 1, 30)[-1] == 29 + 30 * 59
  assert caltech_io.sampled_frames(1830, 30) == list(range(29, 1830, 30)) and len(caltech_io.sampled_frames(1830, 30)) == 61
  assert caltech_io.sampled_frames(10, 3) == [2, 5, 8]
