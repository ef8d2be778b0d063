"""Checkpoints: keep-N, the best-by-MR checkpoint, and restore on another device count (save on 8
devices and restore on 1, and the reverse), optimizer and model state included. XLA fixes the device
count when a process starts, so each topology runs in its own process: this file is also the worker
(`python tests/test_checkpointing.py ROLE WORKDIR`). Crash safety: a process killed (SIGKILL) inside a
save leaves no restorable half-written step; a damaged step folder gives an error naming it and the last
good one."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import base
from lla_jax import checkpointing, sharding, train, train_state
from lla_jax.methods import Method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------------
# A toy method with the detector's state structure: trainable and frozen parameters (multi_transform),
# weight decay on kernels only (masked), SGD momentum, and a running statistic in model_state.


def toy_method() -> Method:
  def init(rng, input_hw):
    del input_hw
    k1, k2 = jax.random.split(rng)
    params = {"dense": {"kernel": jax.random.normal(k1, (64, 32)) / 8, "bias": jnp.zeros(32)},
              "out": {"kernel": jax.random.normal(k2, (32, 8)) / 6}, "frozen": {"scale": jnp.ones(16)}}
    return {"params": params, "batch_stats": {"mean": jnp.zeros(32)}}

  def loss(params, model_state, batch, rng):
    del rng
    h = jnp.tanh(batch["image"] @ params["dense"]["kernel"] + params["dense"]["bias"])
    err = h @ params["out"]["kernel"] * params["frozen"]["scale"][:8] - batch["target"]
    mean = 0.9 * model_state["batch_stats"]["mean"] + 0.1 * jnp.mean(h, axis=0)   # global batch mean
    value = jnp.mean(err ** 2)
    return value, ({"loss_cls": value}, {"batch_stats": {"mean": mean}})

  return Method(init=init, loss=loss, predict=None,
                trainable=lambda p: {"dense": {"kernel": True, "bias": True}, "out": {"kernel": True},
                                     "frozen": {"scale": False}},
                decay=lambda p: {"dense": {"kernel": True, "bias": False}, "out": {"kernel": True},
                                 "frozen": {"scale": False}})


def toy_config(param_sharding="replicated"):
  c = base.get_base_config()
  c.train.warmup_steps = 0
  c.train.batch_size = 8
  c.train.scale_by_batch = False
  c.train.param_sharding = param_sharding
  c.train.fsdp_min_size = 256
  return c


def numbered_state(state, i):
  """`state` at step i with every parameter shifted by i: each saved step has its own values."""
  return state.replace(step=state.step + i, params=jax.tree.map(lambda x: x + i, state.params))


def toy_batch(step, batch=8):
  rng = np.random.default_rng(step)
  return {"image": rng.normal(size=(batch, 64)).astype(np.float32),
          "target": rng.normal(size=(batch, 8)).astype(np.float32)}


def flat(state) -> dict:
  """{keystr: host array} of every leaf, gathered from all devices."""
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def specs(state) -> dict:
  return {jax.tree_util.keystr(p): str(v.sharding.spec) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def run_steps(config, method, mesh, state, tx, schedule, first, last):
  step = train.make_train_step(method, tx, schedule, mesh, jax.tree.map(lambda x: x.sharding, state))
  rng = train.train_rng(config, mesh)
  for i in range(first, last + 1):
    state, _ = step(state, sharding.shard_batch(toy_batch(i), mesh), rng)
  return state


def worker(role: str, workdir: str) -> None:
  """save: train 3 steps on this process's devices, checkpoint, dump the state, train on to step 5.
  resume: restore the latest checkpoint onto this process's devices, check it against the dump, train to
  step 5, dump. Param layout: FSDP on 8 devices, replicated on 1 (both unusual for the other side)."""
  n = jax.device_count()
  config = toy_config("fsdp" if n == 8 else "replicated")
  method = toy_method()
  mesh = sharding.make_mesh()
  state, tx, schedule = train_state.create_train_state(config, method, mesh)
  ckpt = checkpointing.Checkpoints(workdir, keep=2)
  out = {"devices": n}
  if role == "save":
    state = run_steps(config, method, mesh, state, tx, schedule, 1, 3)
    ckpt.save(3, state)
    np.savez(os.path.join(workdir, f"saved_on_{n}.npz"), **flat(state))
    state = run_steps(config, method, mesh, state, tx, schedule, 4, 5)
  elif role == "pause_in_save":   # step 1 completes; the save of step 2 pauses (test hook) until killed
    for i in (1, 2):
      ckpt.save(i, numbered_state(state, i))
    raise AssertionError("the save of step 2 returned: the pause hook did not fire")
  elif role == "resume":
    saved = dict(np.load(os.path.join(workdir, f"saved_on_{8 if n == 1 else 1}.npz")))
    from_abstract = flat(ckpt.restore(train_state.abstract_train_state(config, method, mesh)))   # no values needed
    state = ckpt.restore(state)
    got = flat(state)
    out["abstract_equal"] = all(np.array_equal(from_abstract[k], got[k]) for k in got)
    out["restored_step"] = int(got[".step"])
    out["bitwise_equal"] = sorted(k for k in saved if np.array_equal(saved[k], got[k]))
    out["leaves"] = sorted(saved)
    out["specs"] = specs(state)
    state = run_steps(config, method, mesh, state, tx, schedule, out["restored_step"] + 1, 5)
  else:
    raise ValueError(role)
  ckpt.close()
  np.savez(os.path.join(workdir, f"{role}_step5_on_{n}.npz"), **flat(state))
  with open(os.path.join(workdir, f"{role}_on_{n}.json"), "w") as f:
    json.dump(out, f)


def worker_env(devices, **extra):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
              PYTHONPATH=ROOT, **extra)


def spawn(role, workdir, devices):
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), role, str(workdir)], env=worker_env(devices),
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, f"{role}_on_{devices}.json")) as f:
    return json.load(f)


@pytest.mark.parametrize("save_on,restore_on", [(8, 1), (1, 8)])
def test_restore_on_another_device_count(tmp_path, save_on, restore_on):
  """Saved on `save_on` devices, restored on `restore_on`: every leaf (step, params, SGD momentum, frozen
  parameters, running statistic) bitwise equal, laid out for the new mesh; training on from the restored
  state reaches the same step-5 state as the uninterrupted run (float32 tolerance, the sums run over a
  different number of devices)."""
  spawn("save", tmp_path, save_on)
  got = spawn("resume", tmp_path, restore_on)
  assert got["devices"] == restore_on and got["restored_step"] == 3
  assert got["bitwise_equal"] == got["leaves"] and got["abstract_equal"]
  assert any("trace" in k for k in got["leaves"])          # the optimizer's momentum is in the checkpoint
  kernel = "['dense']['kernel']"
  momentum = [k for k in got["specs"] if "trace" in k and k.endswith(kernel)]
  if restore_on == 8:        # FSDP layout on the restoring mesh: the (64, 32) kernel and its momentum split
    assert got["specs"][".params" + kernel] == str(P("data")) and got["specs"][momentum[0]] == str(P("data"))
  else:
    assert set(got["specs"].values()) == {str(P())}
  resumed = np.load(os.path.join(tmp_path, f"resume_step5_on_{restore_on}.npz"))
  uninterrupted = np.load(os.path.join(tmp_path, f"save_step5_on_{save_on}.npz"))
  for k in uninterrupted:
    np.testing.assert_allclose(resumed[k], uninterrupted[k], rtol=1e-5, atol=1e-7, err_msg=k)


# ---------------------------------------------------------------------------------------------------
# In-process behaviour.


def test_keep_n_and_missing_step(tmp_path):
  mesh = sharding.make_mesh()
  state, _, _ = train_state.create_train_state(toy_config(), toy_method(), mesh)
  ckpt = checkpointing.Checkpoints(str(tmp_path), keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, state.replace(step=state.step + step))
  assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
  assert int(ckpt.restore(state, 2).step) == 2
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 1 in .*checkpoints; have \[2, 3\]"):
    ckpt.restore(state, 1)
  ckpt.close()
  assert not [f for f in os.listdir(tmp_path / "checkpoints") if "tmp" in f]   # no half-written folders


def test_abstract_targets(tmp_path):
  """train_state.abstract_train_state carries the layout of create_train_state; a template without shardings
  (plain jax.eval_shape) restores replicated on the current devices."""
  config, method, mesh = toy_config("fsdp"), toy_method(), sharding.make_mesh()
  state, _, _ = train_state.create_train_state(config, method, mesh)
  abstract = train_state.abstract_train_state(config, method, mesh)
  assert jax.tree.map(lambda x: x.sharding, abstract) == jax.tree.map(lambda x: x.sharding, state)
  assert state.params["dense"]["kernel"].sharding.spec == P("data")
  ckpt = checkpointing.Checkpoints(str(tmp_path))
  ckpt.save(1, state)
  bare = jax.eval_shape(lambda: train_state.create_train_state(config, method, mesh)[0])
  assert bare.params["dense"]["kernel"].sharding is None
  restored = ckpt.restore(bare)
  ckpt.close()
  assert restored.params["dense"]["kernel"].sharding.spec == P()
  assert len(restored.params["dense"]["kernel"].sharding.device_set) == 8
  for k, v in flat(state).items():
    np.testing.assert_array_equal(flat(restored)[k], v, err_msg=k)


def test_best_checkpoint_keeps_lowest_mr(tmp_path):
  mesh = sharding.make_mesh()
  state, _, _ = train_state.create_train_state(toy_config(), toy_method(), mesh)
  best = checkpointing.BestCheckpoint(str(tmp_path))
  at = lambda s: state.replace(step=state.step + s)
  assert best.update(10, 0.50, at(10), extra={"AP": 0.8})
  assert not best.update(20, 0.60, at(20))          # worse
  assert not best.update(25, float("nan"), at(25))   # no MR
  assert best.update(30, 0.40, at(30))
  assert best.checkpoints.all_steps() == [30]        # only the best is kept
  best.close()
  with open(tmp_path / "best.json") as f:
    assert json.load(f) == {"step": 30, "MR": 0.40}
  again = checkpointing.BestCheckpoint(str(tmp_path))   # a restarted run remembers the best so far
  assert (again.step, again.value) == (30, 0.40)
  assert not again.update(40, 0.45, at(40))
  assert int(again.checkpoints.restore(state).step) == 30
  again.close()


# ---------------------------------------------------------------------------------------------------
# Crash safety.


def test_kill_inside_save_resumes_from_previous_checkpoint(tmp_path):
  """A process killed with SIGKILL inside the save of step 2 (paused there by the LLA_TEST_PAUSE_IN_SAVE
  hook, with step 2's files written but not committed): the folder it was writing exists, yet the next
  open lists only step 1 and restores step 1's values; a reader leaves the folder (it could be a running
  training's save), the next run's first save removes it."""
  marker = tmp_path / "paused.json"
  env = worker_env(1, **{checkpointing.PAUSE_IN_SAVE_ENV: f"2:{marker}"})
  proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "pause_in_save", str(tmp_path)], env=env,
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.monotonic() + 300
    while not marker.exists():
      assert proc.poll() is None, proc.stdout.read()[-3000:]
      assert time.monotonic() < deadline, "the save of step 2 never reached the pause hook"
      time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.stdout.close()
  paused = json.loads(marker.read_text())
  folder = tmp_path / "checkpoints"
  assert paused["step"] == 2 and len(paused["temporary"]) == 1 and paused["temporary"][0].startswith("2.")
  half_written = folder / paused["temporary"][0]
  assert half_written.is_dir() and (half_written / "default" / "_METADATA").exists()   # step 2's data was there
  assert sorted(os.listdir(folder)) == sorted(["1", paused["temporary"][0]])

  state, _, _ = train_state.create_train_state(toy_config(), toy_method(), sharding.make_mesh())
  ckpt = checkpointing.Checkpoints(str(tmp_path), keep=2)
  assert ckpt.latest_step() == 1 and ckpt.all_steps() == [1]
  restored = flat(ckpt.restore(state))
  for k, v in flat(numbered_state(state, 1)).items():
    np.testing.assert_array_equal(restored[k], v, err_msg=k)
  assert half_written.is_dir()                            # a reader does not touch it
  ckpt.save(3, numbered_state(state, 3))
  ckpt.close()
  assert sorted(os.listdir(folder)) == ["1", "3"]        # the writer removed it


def _truncate_data(step_dir):
  """Cut every array data file of a step folder in half (a full disk, a partial copy)."""
  for root, _, files in os.walk(step_dir):
    if os.path.basename(root) == "d":
      for f in files:
        path = os.path.join(root, f)
        os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.parametrize("damage", ["truncated_data", "no_metadata"])
def test_unreadable_checkpoint_names_it_and_the_last_good_one(tmp_path, damage):
  state, _, _ = train_state.create_train_state(toy_config(), toy_method(), sharding.make_mesh())
  ckpt = checkpointing.Checkpoints(str(tmp_path), keep=3)
  for i in (1, 2, 3):
    ckpt.save(i, numbered_state(state, i))
  folder = tmp_path / "checkpoints"
  for step in (3, 2):                                      # the newest two are damaged, step 1 is not
    if damage == "truncated_data":
      _truncate_data(folder / str(step))
    else:
      os.remove(folder / str(step) / "default" / "_METADATA")
  with pytest.raises(checkpointing.CheckpointError) as error:
    ckpt.restore(state)
  message = str(error.value)
  assert message.startswith(f"checkpoint {folder / '3'} cannot be restored (")
  assert f"The last good checkpoint is {folder / '1'} (step 1): move {folder / '3'}" in message
  assert "Traceback" not in message and len(message) < 1200
  shutil.rmtree(folder / "3")                               # what the message says, for both bad steps
  shutil.rmtree(folder / "2")
  ckpt.close()
  again = checkpointing.Checkpoints(str(tmp_path), keep=3)
  assert again.latest_step() == 1
  restored = flat(again.restore(state))
  again.close()
  for k, v in flat(numbered_state(state, 1)).items():
    np.testing.assert_array_equal(restored[k], v, err_msg=k)


def test_no_readable_checkpoint_says_so(tmp_path):
  state, _, _ = train_state.create_train_state(toy_config(), toy_method(), sharding.make_mesh())
  ckpt = checkpointing.Checkpoints(str(tmp_path), keep=3)
  ckpt.save(1, state)
  _truncate_data(tmp_path / "checkpoints" / "1")
  with pytest.raises(checkpointing.CheckpointError, match=r"checkpoint .*checkpoints/1 cannot be restored "
                     r"\(.*\)\. No older checkpoint in .*checkpoints restores either \(have \[1\]\)"):
    ckpt.restore(state)
  ckpt.close()


def test_asynchronous_save_is_complete_after_wait(tmp_path):
  """save(wait=False) returns before orbax has written; the state may be changed at once (the arrays are
  copied to host memory first); the step is listed and restores once written."""
  state, _, _ = train_state.create_train_state(toy_config(), toy_method(), sharding.make_mesh())
  ckpt = checkpointing.Checkpoints(str(tmp_path), keep=2)
  one = numbered_state(state, 1)
  ckpt.save(1, one, wait=False)
  one.params["dense"]["kernel"].delete()                 # as a donated train step would
  ckpt.save(2, numbered_state(state, 2), wait=False)     # waits for step 1 first
  ckpt.wait_until_finished()
  assert ckpt.all_steps() == [1, 2]
  restored = flat(ckpt.restore(state, 1))
  ckpt.close()
  for k, v in flat(numbered_state(state, 1)).items():
    np.testing.assert_array_equal(restored[k], v, err_msg=k)


if __name__ == "__main__":
  worker(sys.argv[1], sys.argv[2])
