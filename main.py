"""lla-jax entry point: python main.py --config=configs/quickstart.py --workdir=W [--mode=...]

Modes: train (train, resuming from the workdir, then evaluate), eval (restore a checkpoint and run the
evaluators of config.evals), predict (draw detections on a folder of images; with --exported=FILE from an
exported artifact instead of a checkpoint), convert (a weights file into a checkpoint; lla_jax/convert.py),
export (the detector as a jax.export artifact, W/export/detector.jax + .json; lla_jax/export.py).
Overrides: --config.train.batch_size=8.
Multi-host: one process per host with --coordinator_address=HOST:PORT --num_processes=N --process_id=I,
or launched by SLURM / Open MPI (srun, mpirun) with nothing extra (lla_jax/distributed.py).
"""
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Everything the run writes goes here (checkpoints, metrics, pictures).")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict", "convert", "export"], "What to do.")
flags.DEFINE_integer("step", None, "--mode=eval/predict/export: checkpoint step to restore (default: latest).")
flags.DEFINE_string("images", None, "--mode=predict: folder of images to draw detections on.")
flags.DEFINE_string("exported", None, "--mode=predict: run this --mode=export artifact (W/export/detector.jax) "
                    "through lla_jax/serving.py instead of restoring a checkpoint.")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "jax.distributed.initialize: auto (when the flags below, JAX_COORDINATOR_ADDRESS or a SLURM / "
                  "Open MPI launch of several processes say so), on (always; JAX detects the cluster), off.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0, the same on every process.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index in [0, num_processes).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from lla_jax import cli, distributed
  # Before anything touches a device: the distributed runtime decides which devices exist.
  try:
    distributed.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  except ValueError as e:   # inconsistent distributed flags
    raise app.UsageError(str(e))
  from lla_jax import checkpointing, nonfinite
  try:
    cli.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, step=FLAGS.step, images=FLAGS.images, exported=FLAGS.exported,
            config_name=config_flags.get_config_filename(FLAGS["config"]))
  except (checkpointing.CheckpointError, nonfinite.NonfiniteError) as e:   # a message, not a stack trace
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  from lla_jax import host_memory
  host_memory.keep_freed_memory()   # first: before any library starts threads (lla_jax/host_memory.py)
  from lla_jax.cli import check_overrides
  from lla_jax.errors import BadInputError
  try:   # a bad file or value of the user's (config, overrides, weights, images): its message, no stack trace
    check_overrides(sys.argv[1:])
    app.run(main)
  except (BadInputError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
