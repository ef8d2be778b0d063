"""Fixed-size random sampling of positives and negatives (detectron2 / cvpods
cvpods/modeling/sampling.py `subsample_labels`), with a static output shape. Pure jnp, one image.

Upstream draws `torch.randperm(#positives)[:n_pos]` and `torch.randperm(#negatives)[:n_neg]`: a uniformly
random subset of each class, in random order. Here ONE uniform random permutation of all A candidates
(`jax.random.permutation`, which repeats its random-key sort until the order is exactly uniform) ranks
them; the n_pos positives of lowest rank and the n_neg negatives of lowest rank are taken. The
restriction of a uniform permutation to a subset is a uniform ordering of that subset, and the
restrictions to disjoint subsets are independent, so each class's sample is a uniform subset without
replacement, independent of the other class's, exactly as upstream (but not the same draw: torch's global
RNG cannot be reproduced).

Keying: the result is a function of (labels, rng) only. jax's counter-based PRNG gives the same values
for the same key whatever the number of devices or the sharding of the batch, so a caller that derives
each image's key from the step key and the image's GLOBAL index in the batch (e.g.
`jax.random.split(step_key, global_batch)` vmapped with the images, or `fold_in(step_key, image_id)`)
draws the same samples on 1 device as on 8.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Sample(NamedTuple):
  """A fixed-size sample of one image, positives first.

  index    (num,) int32  candidate index of each slot (0 in unused slots)
  valid    (num,) bool   slot holds a sampled candidate: slots [0, n_pos + n_neg)
  positive (num,) bool   slot holds a positive: slots [0, n_pos)
  """
  index: jax.Array
  valid: jax.Array
  positive: jax.Array


def sample(labels, num: int, positive_fraction: float, rng, bg_label: int = 0) -> Sample:
  """Sample up to `num` candidates of one image: positives first, then negatives, in random order.

  labels (A,) int: -1 = ignore (never sampled), `bg_label` = negative, any other value = positive
  (RPN: labels {-1, 0, 1} with bg_label 0; RoI head: classes {-1, 0..C-1, C} with bg_label C).
  n_pos = min(#pos, int(num * positive_fraction)), n_neg = min(#neg, num - n_pos); both are uniform random
  subsets without replacement (see the module docstring). rng: a jax PRNG key for this image.
  """
  labels = jnp.asarray(labels)
  a = labels.shape[0]
  num, max_pos = int(num), int(num * positive_fraction)
  if num < 0 or not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"sample: num={num} must be >= 0 and positive_fraction={positive_fraction} in [0, 1]")
  pos = (labels != -1) & (labels != bg_label)
  neg = labels == bg_label
  n_pos = jnp.minimum(jnp.sum(pos), max_pos).astype(jnp.int32)
  n_neg = jnp.minimum(jnp.sum(neg), num - n_pos).astype(jnp.int32)
  rank = jnp.zeros((a,), jnp.int32).at[jax.random.permutation(rng, a)].set(jnp.arange(a, dtype=jnp.int32))
  pos_idx = _lowest_rank(rank, pos, min(max_pos, a), num)
  neg_idx = _lowest_rank(rank, neg, min(num, a), num)
  slot = jnp.arange(num, dtype=jnp.int32)
  is_pos = slot < n_pos
  valid = slot < n_pos + n_neg
  index = jnp.where(is_pos, pos_idx, neg_idx[jnp.clip(slot - n_pos, 0, num - 1)])
  return Sample(index=jnp.where(valid, index, 0).astype(jnp.int32), valid=valid, positive=is_pos)


def _lowest_rank(rank, eligible, k, num):
  """(num,) indices of the eligible candidates in ascending rank (first k; the rest padded with 0)."""
  a = rank.shape[0]
  if k == 0:
    return jnp.zeros((num,), jnp.int32)
  _, idx = jax.lax.top_k(jnp.where(eligible, a - rank, -1), k)  # ranks are distinct: no ties among eligible
  return jnp.pad(idx.astype(jnp.int32), (0, num - k))


def sampled_mask(sample: Sample, size: int):
  """(size,) bool: the candidates a Sample took (for per-anchor losses such as the RPN's)."""
  return jnp.zeros((size,), bool).at[sample.index].max(sample.valid)
