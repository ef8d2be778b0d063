"""The Caltech spec's worked example (E.10) as files: bbGt annotations of four frames of set06/V000 and detections
in either layout."""
import os

FRAMES = [(6, 0, 29), (6, 0, 59), (6, 0, 89), (6, 0, 119)]
GT = {
    29: ["person 100 100 41 100 0 0 0 0 0 0 0", "person 300 150 30 60 1 300 150 30 30 0 0",
         "ignore 450 80 120 150 0 0 0 0 0 1 0", "person-fa 200 300 20 50 0 0 0 0 0 0 0"],
    59: ["person 50 200 25 62 0 0 0 0 0 0 0", "people 400 200 60 80 0 0 0 0 0 0 0"],
    89: [],
    119: ["person 600 100 41 100 0 0 0 0 0 0 0", "person 200 150 30 80 0 0 0 0 0 0 0"],
}
DT = {
    29: [(100, 100, 41, 100, .95), (302, 150, 30, 60, .9), (460, 100, 40, 100, .8), (10, 10, 40, 100, .7)],
    59: [(400, 200, 60, 80, .85), (52, 200, 25, 62, .6)],
    89: [(300, 300, 20, 50, .75), (300, 300, 10, 30, .99)],
    119: [(600, 100, 41, 100, .65)],
}
EXPECTED = {"Reasonable": 0.4286219914265364, "All": 0.6821903207721967, "Occ=heavy": 0.0,
            "Overlap=75": 0.7169610588172314}


def write_gt(folder, gt=GT, set_id=6, video=0):
  os.makedirs(folder, exist_ok=True)
  for frame, lines in gt.items():
    with open(os.path.join(folder, f"set{set_id:02d}_V{video:03d}_I{frame:05d}.txt"), "w") as f:
      f.write("% bbGt version=3\n" + "".join(line + "\n" for line in lines))
  return str(folder)


def write_dt(folder, dt=DT, layout="video", set_id=6, video=0):
  base = os.path.join(folder, f"set{set_id:02d}", f"V{video:03d}")
  os.makedirs(base if layout == "frame" else os.path.dirname(base), exist_ok=True)
  if layout == "video":
    with open(base + ".txt", "w") as f:
      for frame, rows in dt.items():
        f.writelines(" ".join([str(frame + 1)] + [str(v) for v in r]) + "\n" for r in rows)
  else:
    for frame, rows in dt.items():
      with open(os.path.join(base, f"I{frame:05d}.txt"), "w") as f:
        f.writelines(" ".join(str(v) for v in r) + "\n" for r in rows)
  return str(folder)


def write_frames(path, frames=FRAMES):
  with open(path, "w") as f:
    f.writelines(f"set{s:02d}_V{v:03d}_I{fr:05d}\n" for s, v, fr in frames)
  return str(path)
