"""Shared pieces of the model tests."""
import flax.linen as nn
import jax

# Threefry keys make Flax init compile ~8x slower on CPU; the tests only need some random weights.
KEY = jax.random.key(0, impl="unsafe_rbg")


class TinyBackbone(nn.Module):
  """Stand-in trunk: stride-2 convs, taps C3..C5 at strides 8, 16, 32."""
  @nn.compact
  def __call__(self, x, train=False):
    out = {}
    for i in range(5):
      x = nn.relu(nn.Conv(4 * (i + 1), (3, 3), strides=(2, 2), padding="SAME")(x))
      if i >= 2:
        out[f"C{i + 1}"] = x
    return out
