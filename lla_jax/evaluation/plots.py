"""Miss rate vs FPPI figures (matplotlib, Agg canvas, imported lazily)."""
from __future__ import annotations

import math

import numpy as np

FPPI_RANGE = (1e-3, 1e1)
MISS_RANGE = (1e-2, 1.0)


def plot_mr_fppi(curves: dict, path, title: str = "") -> None:
  """Writes a log-log miss rate vs FPPI figure to a PNG.

  curves: {label: (fppi, miss)} or {label: (fppi, miss, mr)} with fppi / miss (K,) arrays along the score
  order; with an MR (fraction) the legend reads "label (MR 12.34%)". Zero FPPI / miss values are drawn at the
  axis limits (a log axis has no zero).
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6, 5), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  for label, curve in curves.items():
    fppi, miss = np.asarray(curve[0], np.float64), np.asarray(curve[1], np.float64)
    mr = curve[2] if len(curve) > 2 else None
    if mr is not None and not math.isnan(mr):
      label = f"{label} (MR {100 * mr:.2f}%)"
    if len(fppi) == 0:  # no kept detection: miss rate 1 everywhere
      fppi, miss = np.array(FPPI_RANGE), np.ones(2)
    ax.step(np.clip(fppi, *FPPI_RANGE), np.clip(miss, *MISS_RANGE), where="post", label=label)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(*FPPI_RANGE)
  ax.set_ylim(*MISS_RANGE)
  ax.set_xlabel("false positives per image")
  ax.set_ylabel("miss rate")
  ax.grid(True, which="both", alpha=0.3)
  if title:
    ax.set_title(title)
  if curves:
    ax.legend(loc="lower left", fontsize="small")
  fig.savefig(path, format="png")
