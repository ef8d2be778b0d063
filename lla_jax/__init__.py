"""lla-jax: dense pedestrian detection in JAX/Flax (LLA.FCOS, FCOS, ATSS, ALFNet)."""
__version__ = "0.1.0"
