"""Independent re-statements that the tests (and benchmarks) check the package's numbers against.

Plain numpy / Python written from the papers and the upstream code, one image or one box at a time with
explicit loops, sharing no code with lla_jax/ (which never imports them):
  assigners.py   FCOS and ATSS assignment, and the random crowd images of the assigner tests
  lla.py         LLA assignment
  alfnet.py      ALFNet per-step targets, losses, decoding and inference
  evaluation.py  the CrowdHuman and CityPersons protocols, per image
  networks.py    convolution, pooling and normalisation primitives of the backbones and heads
"""
