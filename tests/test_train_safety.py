"""Safe to interrupt: the training command (main.py, in a subprocess, on the quick-start network made tiny)
(a) skips and counts steps with a non-finite loss and stops with a message after train.max_nonfinite_steps
in a row, the last good checkpoint intact; (b) stops on SIGTERM after the step it is on with a checkpoint
and exit 0, and the same command resumes to the same final parameters as an uninterrupted run (the input
stream continues); (c) killed (SIGKILL) inside a checkpoint write, resumes from the previous checkpoint to
the same final parameters. Also: the profile trace, and the resumed numpy input stream is the full
stream's tail."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12


def command(workdir, data_dir, steps=STEPS, **train):
  """main.py on configs/quickstart.py shrunk to seconds: 64x96 images, 16 of them, a width-8 ResNet-18."""
  overrides = dict(steps=steps, warmup_steps=2, lr_steps=(100,), log_every=1, checkpoint_every=4,
                   eval_after_train=False, **train)
  args = [sys.executable, os.path.join(ROOT, "main.py"), "--config=" + os.path.join(ROOT, "configs/quickstart.py"),
          f"--workdir={workdir}", "--config.data.source=numpy", f"--config.data.data_dir={data_dir}",
          "--config.data.render_size=(64,96)", "--config.data.min_size=64", "--config.data.max_size=96",
          "--config.data.pad_size=(64,96)", "--config.data.num_train_images=16", "--config.data.num_val_images=4",
          "--config.data.num_parallel_calls=1", "--config.model.backbone.width=8", "--config.model.fpn.channels=16",
          "--config.model.head.channels=16", "--config.model.head.gn_groups=8"]
  for key, value in overrides.items():
    value = f"({','.join(map(str, value))},)" if isinstance(value, tuple) else value
    args.append(f"--config.train.{key}={value}")
  return args


def env(**extra):
  # unsafe_rbg: threefry makes the network's init compile ~8x slower on CPU (the same in every run here)
  return dict(os.environ, JAX_PLATFORMS="cpu", JAX_DEFAULT_PRNG_IMPL="unsafe_rbg", PYTHONPATH=ROOT,
              TF_CPP_MIN_LOG_LEVEL="3", **extra)


def run(args, **extra):
  proc = subprocess.run(args, env=env(**extra), cwd=ROOT, capture_output=True, text=True, timeout=600)
  return proc.returncode, proc.stdout, proc.stderr


def steps_on_disk(workdir):
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def saved_params(workdir, step):
  """{path: array} of the parameters of checkpoint `step`, read without a restore target (plain numpy)."""
  tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "default"))
  leaves = ocp.tree.to_flat_dict(tree["params"], sep="/")
  return {k: np.asarray(v) for k, v in leaves.items()}


def assert_same_params(a, b):
  assert a.keys() == b.keys() and len(a) > 10
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run to STEPS (with a profile of steps 2..3): (workdir, data_dir, stdout)."""
  root = tmp_path_factory.mktemp("reference")
  workdir, data_dir = str(root / "w"), str(root.parent / "data")
  code, out, err = run(command(workdir, data_dir, profile_steps=(2, 3)))
  assert code == 0, out + err
  return workdir, data_dir, out


@pytest.mark.slow
def test_profile_and_uninterrupted_run(reference):
  workdir, _, out = reference
  assert f"step {STEPS}/{STEPS}" in out and steps_on_disk(workdir) == ["12", "4", "8"]
  assert "Profile of steps 2..3 written to" in out
  traces = [f for _, _, files in os.walk(os.path.join(workdir, "profile")) for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces


def test_nonfinite_steps_are_skipped_then_the_run_stops(tmp_path):
  """NaN loss at step 3 (skipped, counted, training goes on), then at 5, 6, 7: the third in a row stops the
  run at step 7 with the message; the checkpoint of step 8 never comes and the one of step 4 is intact."""
  workdir = str(tmp_path / "w")
  code, out, err = run(command(workdir, str(tmp_path / "data"), test_nan_at_steps=(3, 5, 6, 7), max_nonfinite_steps=3))
  assert code != 0 and "Traceback" not in err, out + err
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: Stopping at step 7: 3 steps in a row had a non-finite loss or gradient (loss=nan; "
                         "4 skipped in all); their updates were skipped, so the parameters are those of step 4"), last
  assert f"The last good checkpoint is {os.path.join(workdir, 'checkpoints', '4')} (step 4)" in last
  assert "step 3: non-finite loss; update skipped (1 in a row, 1 in all)" in out
  assert re.search(r"step 4/12 \| loss \d+\.\d+ .* \| skipped 1 \(0 in a row\)", out), out
  rows = {r["step"]: r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))}
  assert [rows[s]["train/nonfinite_skipped"] for s in range(1, 8)] == [0, 0, 1, 1, 2, 3, 4]
  assert [rows[s]["train/nonfinite_consecutive"] for s in range(1, 8)] == [0, 0, 1, 0, 1, 2, 3]
  assert rows[3]["train/loss"] is None and rows[4]["train/loss"] > 0
  assert steps_on_disk(workdir) == ["4"]
  params = saved_params(workdir, 4)
  assert all(np.isfinite(v).all() for v in params.values())
  opt = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", "4", "default"))["opt_state"]
  assert int(opt["total_notfinite"]) == 1 and int(opt["notfinite_count"]) == 0


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_matches_uninterrupted(tmp_path, reference):
  ref_workdir, data_dir, _ = reference
  workdir = str(tmp_path / "w")
  args = command(workdir, data_dir)
  proc = subprocess.Popen(args, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:        # the first progress line: training is under way
      if line.startswith("step 1/"):
        proc.send_signal(signal.SIGTERM)
        break
    out, err = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, out + err
  stopped = re.search(r"Stopped by SIGTERM after step (\d+): checkpoint saved to (\S+)\. Run the same command", out)
  assert stopped, out + err
  step = int(stopped.group(1))
  assert 1 <= step < STEPS and stopped.group(2) == os.path.join(workdir, "checkpoints", str(step))
  assert str(step) in steps_on_disk(workdir) and "SIGTERM received" in err
  code, out, err = run(args)
  assert code == 0 and f"Resuming from checkpoint step {step}" in out, out + err
  assert_same_params(saved_params(workdir, STEPS), saved_params(ref_workdir, STEPS))


@pytest.mark.slow
def test_kill_inside_a_save_resumes_from_the_previous_checkpoint(tmp_path, reference):
  ref_workdir, data_dir, _ = reference
  workdir, marker = str(tmp_path / "w"), str(tmp_path / "paused.json")
  args = command(workdir, data_dir)
  proc = subprocess.Popen(args, env=env(LLA_TEST_PAUSE_IN_SAVE=f"8:{marker}"), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.2)
    assert os.path.exists(marker), f"the save of step 8 did not pause (exit code {proc.poll()})"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  left = steps_on_disk(workdir)
  assert "4" in left and "8" not in left and any(ocp.utils.TMP_DIR_SUFFIX in f for f in left), left
  code, out, err = run(args)
  assert code == 0 and "Resuming from checkpoint step 4" in out, out + err
  assert steps_on_disk(workdir) == ["12", "4", "8"]    # the half-written step 8 is gone, rewritten whole
  assert_same_params(saved_params(workdir, STEPS), saved_params(ref_workdir, STEPS))


def test_numpy_stream_resumes_where_it_stopped(tmp_path):
  """skip_batches=k yields exactly batches k, k+1, ... of the full stream (epochs straddled, flips included)."""
  from data_pipelines import numpy_source
  from configs import quickstart
  c = quickstart.get_config().data
  c.source, c.data_dir = "numpy", str(tmp_path)
  c.render_size, c.min_size, c.max_size, c.pad_size = (64, 96), 64, 96, (64, 96)
  c.num_train_images, c.num_val_images, c.num_parallel_calls = 6, 2, 1
  full, _ = numpy_source.create_dataset(c, "train", batch_size=4, train=True, seed=3)
  want = [next(full) for _ in range(5)]
  resumed, _ = numpy_source.create_dataset(c, "train", batch_size=4, train=True, seed=3, skip_batches=3)
  for w in want[3:]:
    got = next(resumed)
    assert got.keys() == w.keys()
    for k in w:
      np.testing.assert_array_equal(got[k], w[k], err_msg=k)
