"""Bad-input drill of `python main.py --mode=predict --images=DIR` (issue 14 item 5): a JPEG cut in half, a
truncated PNG, an empty file, a text file named .jpg, a folder without images, a missing folder. Each case runs
main.py as a user does (one subprocess for all, tests/drill/driver.py). Every image is decoded whole before the
model is restored, so a bad file stops the run at once with exit status 1 and an error naming each bad file and
the expected form; files without an image suffix are named in a note on stderr, never dropped silently."""
import io

import numpy as np
from PIL import Image

from tests.drill.common import check_errors, first_error, module_drill


def _picture(fmt):
  rng = np.random.default_rng(0)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(buf, fmt)
  return buf.getvalue()


def _folder(tmp, name, files):
  folder = tmp / name
  folder.mkdir()
  for file_name, data in files.items():
    (folder / file_name).write_bytes(data)
  return folder


def _cases(tmp):
  jpeg, png = _picture("JPEG"), _picture("PNG")
  w = tmp / "workdir_without_checkpoint"

  def predict(folder):
    return ["--config=configs/quickstart.py", f"--workdir={w}", "--mode=predict", f"--images={folder}"]

  return {
      "JPEG cut in half": (predict(_folder(tmp, "half", {"good.jpg": jpeg, "half.jpg": jpeg[:len(jpeg) // 2]})),
                           ["1 of 2 image files cannot be read", "half.jpg", "image file is truncated",
                            "expected a whole .jpg/.jpeg/.png/.bmp file"]),
      "truncated PNG": (predict(_folder(tmp, "png", {"cut.png": png[:len(png) - 40]})),
                        ["cut.png", "cannot be read as an image", "expected a whole"]),
      "empty .jpg": (predict(_folder(tmp, "empty", {"empty.jpg": b""})),
                     ["empty.jpg", "cannot be read as an image", "cannot identify image file"]),
      "text file named .jpg": (predict(_folder(tmp, "text", {"a.jpg": jpeg, "notes.jpg": b"my holiday notes\n"})),
                               ["1 of 2 image files", "notes.jpg", "cannot identify image file"]),
      "two bad files listed together": (predict(_folder(tmp, "two", {"x.jpg": jpeg[:300], "y.png": b"PNG?"})),
                                        ["2 of 2 image files", "x.jpg", "y.png"]),
      "folder without images": (predict(_folder(tmp, "none", {"README.txt": b"hello"})),
                                ["no .jpg/.jpeg/.png/.bmp files in it"]),
      "missing folder": (predict(tmp / "no_such_folder"),
                         ["--mode=predict needs --images=FOLDER of .jpg/.jpeg/.png/.bmp files", "no_such_folder"]),
      # Not an error by itself: a stray non-image file is named in a note; this run then stops for want of a
      # checkpoint (the workdir has none), which shows the images passed the check.
      "a non-image file beside good images": (predict(_folder(tmp, "mixed", {"a.jpg": jpeg, "notes.txt": b"x"})),
                                              ["no checkpoint in"]),
  }


drill = module_drill("main.py", _cases)


def test_bad_images_name_the_file_and_the_expected_form(drill):
  cases, results = drill
  assert not check_errors(cases, results, status=1)


def test_non_image_files_are_named_not_dropped(drill):
  _, results = drill
  _, _, stderr = results["a non-image file beside good images"]
  notes = [line for line in stderr.splitlines() if line.startswith("note:")]
  assert len(notes) == 1 and "skipping 1 entry that is not .jpg/.jpeg/.png/.bmp files: notes.txt" in notes[0]
  assert "no checkpoint in" in first_error(stderr)   # the image check passed; the run stopped at the restore
