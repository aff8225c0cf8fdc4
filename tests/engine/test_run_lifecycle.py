"""The run lifecycle around the loop: the run-directory lock, checkpoints that cannot be read,
rotation next to unreadable files, non-finite states, and a full disk."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from ssl_ext.cli import main as cli_main
from ssl_ext.engine import checkpoint as ckpt
from ssl_ext.engine.run_lock import LOCK_FILE, RunDirectoryInUse, RunLock
from ssl_ext.utils.io import torch_load

import tests.engine._plugins  # noqa: F401  (registers the test hooks)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["config=demo/tiny_synthetic", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.PLOT_CURVES=false",
        "config.MACHINE.NUM_THREADS=1", "config.HOOKS.LOG_FREQUENCY=1", "config.OPTIMIZER.NUM_EPOCHS=1",
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=2", "config.PLUGINS=[tests.engine._plugins]"]


def cli(run_dir, *overrides):
    return cli_main([*TINY, f"config.CHECKPOINT.DIR={run_dir}", *overrides])


def newest_state(run_dir):
    (_, path), *_ = ckpt.list_checkpoints(str(run_dir))
    return path, torch_load(path)


# ------------------------------------------------------------------------------------------ lock
def test_a_live_run_holds_its_directory_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ssl_ext.engine.run_lock import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2") == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and socket.gethostname() in err and "in use by another live run" in err
        assert not os.path.exists(tmp_path / "metrics.jsonl")
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level("WARNING"):
        assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2") == 0
    assert any("Taking over the lock" in r.message and f"process {holder.pid} no longer runs" in r.message for r in caplog.records)
    assert not os.path.exists(tmp_path / LOCK_FILE)  # released at the end


def _foreign_lock(run_dir, **fields):
    identity = {"host": "another-node", "pid": 4242, "pid_start": "1", "slurm_job": None, "started": "yesterday", **fields}
    with open(os.path.join(run_dir, LOCK_FILE), "w") as f:
        json.dump(identity, f)


def test_a_requeued_slurm_job_takes_over_its_own_lock_but_not_anothers(tmp_path, monkeypatch):
    _foreign_lock(tmp_path, slurm_job="7001")
    monkeypatch.setenv("SLURM_JOB_ID", "7002")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with pytest.raises(RunDirectoryInUse, match="SLURM job 7001"):
        RunLock(str(tmp_path)).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "7001")  # the same job after its requeue, maybe on another node
    lock = RunLock(str(tmp_path)).acquire()
    with open(tmp_path / LOCK_FILE) as f:
        assert json.load(f)["pid"] == os.getpid()
    lock.release()
    assert not os.path.exists(tmp_path / LOCK_FILE)


def test_a_lock_from_another_host_is_taken_over_only_once_its_heartbeat_is_stale(tmp_path):
    _foreign_lock(tmp_path)
    with pytest.raises(RunDirectoryInUse, match="another-node, pid 4242"):
        RunLock(str(tmp_path), stale_after_s=600).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_FILE, (old, old))
    RunLock(str(tmp_path), stale_after_s=600).acquire().release()


def test_the_owner_refreshes_its_heartbeat(tmp_path):
    lock = RunLock(str(tmp_path), heartbeat_s=0.05).acquire()
    try:
        old = time.time() - 3600
        os.utime(tmp_path / LOCK_FILE, (old, old))
        time.sleep(0.3)
        assert time.time() - os.path.getmtime(tmp_path / LOCK_FILE) < 5
    finally:
        lock.release()


# ---------------------------------------------------------------------------------- checkpoints
def test_no_readable_checkpoint_stops_and_lists_each_file_then_start_over_is_explicit(tmp_path, capsys):
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=4", "config.CHECKPOINT.KEEP_LAST=0") == 0
    os.remove(tmp_path / "DONE")  # as if the run had been killed before finishing
    paths = [p for _, p in ckpt.list_checkpoints(str(tmp_path))]
    assert len(paths) == 2
    for path in paths:
        with open(path, "r+b") as f:
            f.truncate(100)
    metrics_before = open(tmp_path / "metrics.jsonl").read()
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=4") == 2
    err = capsys.readouterr().err
    assert err.count("\nerror:") + err.startswith("error:") == 1 and "Traceback" not in err
    assert all(path in err for path in paths) and "ON_UNREADABLE=start_over" in err
    assert open(tmp_path / "metrics.jsonl").read() == metrics_before  # nothing appended, nothing restarted
    assert all(os.path.exists(p) for p in paths) and not os.path.exists(tmp_path / "DONE")

    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=4", "config.CHECKPOINT.ON_UNREADABLE=start_over") == 0
    aside = os.listdir(tmp_path / "checkpoints" / "unreadable")
    assert sorted(aside) == sorted(os.path.basename(p) for p in paths)
    assert [json.loads(line)["iteration"] for line in open(tmp_path / "metrics.jsonl") if '"loss"' in line] == [1, 2, 3, 4]


def test_rotation_never_deletes_a_good_checkpoint_in_favour_of_an_unreadable_or_foreign_file(tmp_path):
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2", "config.CHECKPOINT.KEEP_LAST=1") == 0
    os.remove(tmp_path / "DONE")
    folder = tmp_path / "checkpoints"
    garbage = folder / "model_iteration00000099.torch"  # newest by name, unreadable
    garbage.write_bytes(b"not a checkpoint")
    (folder / "notes.txt").write_text("mine")
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=6", "config.CHECKPOINT.KEEP_LAST=1") == 0
    names = sorted(os.listdir(folder))
    assert names == ["model_iteration00000006.torch", "model_iteration00000099.torch", "notes.txt"], names
    assert torch_load(str(folder / "model_iteration00000006.torch"))["iteration"] == 6


def test_a_non_finite_state_is_never_saved_and_the_named_checkpoint_resumes_with_a_lower_lr(tmp_path, capsys):
    # small_cnn has BatchNorm: an inf running variance leaves the training loss finite.
    code = cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=6",
               "config.HOOKS.EXTRA=[{NAME: test_inf_batchnorm_stat_at, PARAMS: {iteration: 3}}]")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "running_var" in err and "model_iteration00000002.torch" in err and "BASE_LR" in err
    path, state = newest_state(tmp_path)
    assert path.endswith("model_iteration00000002.torch")
    assert ckpt.nonfinite_tensors(state) == []
    # The advice: lower the learning rate and relaunch the same command (without the fault). A changed
    # optimizer is a changed recipe: refused, naming the key, until it is allowed explicitly.
    assert "ALLOW_RECIPE_CHANGE=true" in err
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=6", "config.OPTIMIZER.BASE_LR=0.01") == 2
    refused = capsys.readouterr().err
    assert "Traceback" not in refused and "OPTIMIZER.BASE_LR" in refused and "ALLOW_RECIPE_CHANGE" in refused
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=6", "config.OPTIMIZER.BASE_LR=0.01",
               "config.CHECKPOINT.ALLOW_RECIPE_CHANGE=true") == 0
    path, state = newest_state(tmp_path)
    assert state["iteration"] == 6 and ckpt.nonfinite_tensors(state) == []
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"loss"' in line]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]


def test_a_diverging_run_stops_naming_a_checkpoint_that_is_finite_everywhere(tmp_path, capsys):
    code = cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=40", "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=1",
               "config.OPTIMIZER.BASE_LR=1.0e+9", "config.OPTIMIZER.NUM_EPOCHS=5")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "Last good checkpoint: " in err
    named = err.split("Last good checkpoint: ")[1].split(". ")[0]
    assert ckpt.nonfinite_tensors(torch_load(named)) == []


def test_a_finished_run_is_not_reported_under_an_edited_recipe_but_more_epochs_continue_it(tmp_path, capsys):
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2") == 0
    done_before = open(tmp_path / "DONE").read()
    # The edited config (another learning rate, another loss temperature, another seed) stops, listing each key.
    code = cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2", "config.OPTIMIZER.BASE_LR=0.5", "config.SEED_VALUE=3")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1
    assert str(tmp_path) in err and "OPTIMIZER.BASE_LR:" in err and "SEED_VALUE: 0 -> 3" in err
    assert "new config.CHECKPOINT.DIR" in err and "ALLOW_RECIPE_CHANGE=true" in err
    assert open(tmp_path / "DONE").read() == done_before  # nothing changed
    # Not recipe: the run's length (a longer run continues), logging and mixed precision.
    assert cli(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=3", "config.HOOKS.LOG_FREQUENCY=5",
               "config.MODEL.AMP.DTYPE=float16") == 0
    assert torch_load(newest_state(tmp_path)[0])["iteration"] == 3


def test_recipe_changes_ignore_framework_keys_an_older_run_lacks_but_not_plugin_parameters(tmp_path):
    from omegaconf import OmegaConf

    from ssl_ext.config import compose_config, save_config
    from ssl_ext.engine.run_state import recipe_changes

    cfg = compose_config([*TINY, f"config.CHECKPOINT.DIR={tmp_path}"])
    saved = OmegaConf.to_container(cfg, resolve=True)
    del saved["config"]["DATA"]["TRAIN"]["LONG_TAIL"]["CLASS_ORDER_SEED"]  # a key added by a later version
    save_config(OmegaConf.create(saved), str(tmp_path / "train_config.yaml"))
    assert recipe_changes(cfg) == []
    del saved["config"]["LOSS"]["PARAMS"]["temperature"]  # the plugin's default then, 0.2 given now
    save_config(OmegaConf.create(saved), str(tmp_path / "train_config.yaml"))
    assert recipe_changes(cfg) == ["LOSS.PARAMS.temperature: '<absent>' -> 0.2"]


def test_machines_hooks_data_paths_and_mixed_precision_are_not_a_new_recipe(tmp_path):
    from ssl_ext.config import compose_config, save_config
    from ssl_ext.engine.run_state import recipe_changes

    save_config(compose_config([*TINY, f"config.CHECKPOINT.DIR={tmp_path}"]), str(tmp_path / "train_config.yaml"))
    moved = compose_config([*TINY, f"config.CHECKPOINT.DIR={tmp_path}", "config.MACHINE.NUM_THREADS=2",
                            "config.HOOKS.PLOT_CURVES=true", "config.DATA.TRAIN.DATA_PATHS=[/elsewhere]",
                            "config.DATA.TRAIN.AUGMENT_ON=device", "config.MODEL.AMP.DTYPE=float16",
                            "config.OPTIMIZER.NUM_EPOCHS=7", "config.DISTRIBUTED.NUM_PROC_PER_NODE=2"])
    assert recipe_changes(moved) == []
    edited = compose_config([*TINY, f"config.CHECKPOINT.DIR={tmp_path}", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=5"])
    assert recipe_changes(edited) == ["DATA.TRAIN.BATCHSIZE_PER_REPLICA: " + repr(
        compose_config(TINY).config.DATA.TRAIN.BATCHSIZE_PER_REPLICA) + " -> 5"]


# ------------------------------------------------------------------------------------ full disk
@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MiB tmpfs (root only); outside CI a non-root developer skips, CI must be able to run it."""
    mount = tmp_path / "small_fs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {result.stderr}")
        pytest.skip(f"needs root to mount a small tmpfs: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_checkpointing_keeps_earlier_checkpoints_and_says_what_to_do(small_filesystem, capsys):
    run_dir = small_filesystem / "run"
    assert cli(run_dir, "config.OPTIMIZER.MAX_ITERATIONS=2") == 0
    os.remove(run_dir / "DONE")
    good_path, good = newest_state(run_dir)
    size = os.path.getsize(good_path)
    free = shutil.disk_usage(small_filesystem).free
    with open(small_filesystem / "filler", "wb") as f:  # leave room for log lines, not for a checkpoint
        f.write(b"\0" * (free - size // 2))
    assert cli(run_dir, "config.OPTIMIZER.MAX_ITERATIONS=4") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "No space left" in err and str(run_dir / "checkpoints") in err
    assert "bytes are free" in err and "needs" in err
    assert sorted(os.listdir(run_dir / "checkpoints")) == [os.path.basename(good_path)]  # no partial file left
    assert torch_load(good_path)["iteration"] == good["iteration"] == 2
