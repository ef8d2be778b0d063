"""Command line: evaluate detection files (CrowdHuman, CityPersons, Caltech) and convert between formats.

  python -m lla_jax.evaluation crowdhuman --gt GT.odgt --dt DT.odgt [--no-ji] [--json] [--plot PNG]
  python -m lla_jax.evaluation citypersons --gt GT.json --dt DT.json [--setups A,B] [--iou 0.5] [--json] [--plot PNG]
  python -m lla_jax.evaluation caltech --gt ANNO_DIR --dt DET_DIR [--frames F] [--setups A,B] [--bounds none] [--json]
  python -m lla_jax.evaluation convert IN OUT --to FORMAT [...]    (see lla_jax/evaluation/convert.py)

--dt may also be COCO-format detections (a JSON list, detected from the contents; lla_jax/evaluation/coco.py);
--coco-gt COCO.json maps their image ids through that COCO ground truth's file names.

Without --json a readable table (percentages); with --json one JSON object (fractions in [0, 1], null where
undefined) on the last line. Bad input: a message naming the file, line / entry and ID on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from lla_jax.evaluation import InputError, caltech, citypersons, coco, convert, crowdhuman, odgt, plots


def _fraction(v):
  return None if v is None or math.isnan(v) else float(v)


def _percent(v):
  return "n/a" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def _crowdhuman(args):
  gt = odgt.load(args.gt)
  dt = coco.load_detections(args.dt, gt, "crowdhuman", args.coco_gt)
  r = crowdhuman.evaluate(gt, odgt.load(args.dt) if dt is None else dt, compute_ji=not args.no_ji)
  metrics = {key: _fraction(r[key]) for key in ("AP", "MR", "Recall", "JI")}
  if args.plot:
    plots.plot_mr_fppi({"CrowdHuman": (r["curve"]["fppi"], r["curve"]["miss"], r["MR"])}, args.plot,
                       title="CrowdHuman (body)")
  if args.json:
    print(json.dumps(metrics))
    return
  print(f"CrowdHuman: {r['num_images']} images, {r['num_positives']} positives, "
        f"{len(r['curve']['fppi'])} matched-or-false detections")
  for key, name in (("AP", "AP50"), ("MR", "MR^-2"), ("Recall", "Recall"), ("JI", "JI")):
    print(f"  {name:<8} {_percent(r[key]) if key != 'JI' or not args.no_ji else 'not computed'}")


def _citypersons(args):
  setups = [s.strip() for s in args.setups.split(",") if s.strip()] if args.setups else None
  gt = citypersons.load_gt(args.gt)
  dt = coco.load_detections(args.dt, gt, "citypersons", args.coco_gt)
  dt = citypersons.load_dt(args.dt, gt) if dt is None else dt
  r = citypersons.evaluate(gt, dt, setups=setups, iou=args.iou)
  other = sum(1 for d in dt if isinstance(d, dict) and d.get("category_id") != citypersons.PERSON)
  if other:
    print(f"note: {other} detections with category_id != {citypersons.PERSON} are not evaluated", file=sys.stderr)
  if args.plot:
    plots.plot_mr_fppi({n: (v["fppi"], v["miss"], v["MR"]) for n, v in r.items()}, args.plot,
                       title=f"CityPersons (IoU {args.iou:g})")
  if args.json:
    print(json.dumps({n: _fraction(v["MR"]) for n, v in r.items()}))
    return
  print(f"CityPersons MR^-2 at IoU {args.iou:g}")
  for name, v in r.items():
    print(f"  {name:<22} {_percent(v['MR'])}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m lla_jax.evaluation", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="benchmark", required=True)
  ch = sub.add_parser("crowdhuman", help="AP, MR^-2, Recall, JI (CrowdDet toolkit semantics)")
  ch.add_argument("--gt", required=True, help="GT odgt (annotation_val.odgt)")
  ch.add_argument("--dt", required=True, help="detections odgt: {ID, width, height, dtboxes: [{box, score}]}")
  ch.add_argument("--no-ji", action="store_true", help="skip the Jaccard index")
  cp = sub.add_parser("citypersons", help="MR^-2 per setup (official toolbox semantics)")
  cp.add_argument("--gt", required=True, help="GT json (val_gt.json layout)")
  cp.add_argument("--dt", required=True, help="detections json: [{image_id, category_id, bbox, score}]")
  cp.add_argument("--setups", default=None, help="comma-separated setup names (default: all)")
  cp.add_argument("--iou", type=float, default=0.5, help="IoU threshold (0.5 or 0.75)")
  for p in (ch, cp):
    p.add_argument("--json", action="store_true", help="print one JSON object of fractions on the last line")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the miss rate vs FPPI curve(s)")
    p.add_argument("--coco-gt", default=None, metavar="JSON", help="COCO ground truth naming --dt's image ids")
  caltech.add_parser(sub)  # its own options; dispatches through args.run
  convert.add_arguments(sub.add_parser("convert", help="odgt / CityPersons / Caltech / COCO, gt or dt, both ways"))
  args = parser.parse_args(argv)
  try:
    if args.benchmark == "convert":
      print(convert.run(args))
    else:
      (getattr(args, "run", None) or (_crowdhuman if args.benchmark == "crowdhuman" else _citypersons))(args)
  except (InputError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
