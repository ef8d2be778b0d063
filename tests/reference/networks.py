"""Plain numpy re-statements of the network primitives, written from the specs (references for tests)."""
import math

import jax
import jax.numpy as jnp
import numpy as np


def same_pads(n: int, k: int, s: int) -> tuple:
  """TensorFlow 'SAME' padding (before, after) of one axis: total max((ceil(n/s)-1)s + k - n, 0), extra after."""
  total = max((math.ceil(n / s) - 1) * s + k - n, 0)
  return total // 2, total - total // 2


def np_conv2d(x, w, b=None, stride=1, pad=0, groups=1):
  """x (B,H,W,Cin), w (kh,kw,Cin/groups,Cout) -> (B,H',W',Cout), float64 cross-correlation.

  pad: int (symmetric), 'same' (TF), or ((top, bottom), (left, right)); zero padding.
  """
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)
  kh, kw = w.shape[:2]
  if pad == "same":
    pad = (same_pads(x.shape[1], kh, stride), same_pads(x.shape[2], kw, stride))
  elif isinstance(pad, int):
    pad = ((pad, pad), (pad, pad))
  x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
  ho = (x.shape[1] - kh) // stride + 1
  wo = (x.shape[2] - kw) // stride + 1
  cin_g, cout = w.shape[2], w.shape[3]
  cout_g = cout // groups
  out = np.zeros((x.shape[0], ho, wo, cout))
  for g in range(groups):
    xg = x[..., g * cin_g:(g + 1) * cin_g]
    wg = w[..., g * cout_g:(g + 1) * cout_g]
    for i in range(kh):
      for j in range(kw):
        patch = xg[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
        out[..., g * cout_g:(g + 1) * cout_g] += patch @ wg[i, j]
  if b is not None:
    out += np.asarray(b, np.float64)
  return out


def np_max_pool(x, k, s, pad):
  """x (B,H,W,C) max-pool with -inf padding ((top, bottom), (left, right))."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), pad[0], pad[1], (0, 0)), constant_values=-np.inf)
  ho = (x.shape[1] - k) // s + 1
  wo = (x.shape[2] - k) // s + 1
  out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
  for i in range(k):
    for j in range(k):
      out = np.maximum(out, x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s])
  return out


def np_frozen_bn(x, p, eps):
  """FrozenBN: (x - mean) / sqrt(var + eps) * scale + bias."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  return (x - p["mean"]) / np.sqrt(p["var"] + eps) * p["scale"] + p["bias"]


def np_group_norm(x, scale, bias, groups, eps=1e-5):
  """GroupNorm over (H, W, C/groups) per sample and group, biased variance."""
  b, h, w, c = x.shape
  xg = x.reshape(b, h, w, groups, c // groups)
  mean = xg.mean(axis=(1, 2, 4), keepdims=True)
  var = xg.var(axis=(1, 2, 4), keepdims=True)
  y = ((xg - mean) / np.sqrt(var + eps)).reshape(b, h, w, c)
  return y * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)


def relu(x):
  return np.maximum(x, 0.0)


def randomize(params, seed=0):
  """Random values everywhere (variances positive) so every parameter matters in a comparison."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  rng = np.random.default_rng(seed)
  out = []
  for path, leaf in leaves:
    name = path[-1].key
    if name == "var":
      v = rng.uniform(0.5, 1.5, leaf.shape)
    elif name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      v = rng.normal(0, 1.0 / np.sqrt(fan_in), leaf.shape)
    elif name == "scale":
      v = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      v = rng.normal(0, 0.2, leaf.shape)
    out.append(jnp.asarray(v, jnp.float32))
  return jax.tree_util.tree_unflatten(treedef, out)
