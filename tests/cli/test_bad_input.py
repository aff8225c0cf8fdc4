"""Bad input, table-driven: every kind of bad value, file or run directory stops the command line
with one message naming the key, file or value, exit code 2, and no Python traceback.

Each row of ``CASES`` sets up what it needs under ``tmp_path``, runs ``ssl_ext.cli.main(argv)``
in-process and checks: the exit code, no "Traceback" on stderr, exactly one line starting with
``error:``, the row's fragments in that message, and that nothing the launch found was changed
(a refused launch leaves an existing run directory byte for byte as it was, and releases its lock).
Rows caught by validation also leave no run directory behind: nothing heavy started. A run that
stops itself (a non-finite loss) exits with 1 and the same single message. Three rows
also run as a real process through ``tools/run_distributed_engines.py``, one of them with the error
raised inside a 2-rank run.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pytest
import torch

from ssl_ext.cli import main
from ssl_ext.config import ConfigError
from ssl_ext.engine.run_lock import LOCK_FILE, RunLock, _process_start_time

GPUS = torch.cuda.device_count()
REPO = Path(__file__).resolve().parents[2]
RUN_SCRIPT = REPO / "tools" / "run_distributed_engines.py"
# The smallest real run: 2 steps, no plots, no FLOP count, one thread; on the CPU so the machine's checks
# (processes per core) read the same on a GPU machine.
TINY = ["config=demo/tiny_synthetic", "config.OPTIMIZER.MAX_ITERATIONS=2", "config.HOOKS.PLOT_CURVES=false",
        "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.MACHINE.NUM_THREADS=1", "config.MACHINE.DEVICE=cpu"]
# demo/tiny_synthetic with 32 images (2 steps per epoch), trained to the end of its 2 epochs.
TWO_EPOCHS = ["config.OPTIMIZER.MAX_ITERATIONS=-1", "config.DATA.TRAIN.SOURCE_PARAMS.num_images=32"]
# PMSN with its power-law prior swapped for a histogram file ({tmp}/prior.npy); tau belongs to power_law only.
PMSN_FROM_FILE = ["config=pretrain/pmsn/pmsn_cpu_tiny", "~config.LOSS.PARAMS.prior.PARAMS.tau",
                  "config.LOSS.PARAMS.prior.NAME=from_file", "+config.LOSS.PARAMS.prior.PARAMS.path={tmp}/prior.npy"]


@dataclass
class Case:
    """One bad input. ``argv`` and ``fragments`` may use {tmp} (tmp_path), {run} (the run directory)
    and the names ``setup`` returns; ``setup(tmp_path, run_dir, cleanup)`` writes files, starts helpers."""

    argv: Sequence[str]
    fragments: Sequence[str]
    setup: Optional[Callable[[Path, Path, contextlib.ExitStack], Optional[Dict[str, object]]]] = None
    exit_code: int = 2
    # Stopped by validation: the run directory is never created.
    stops_before_the_run: bool = True


def write(name: str, text: str):
    def setup(tmp: Path, run: Path, cleanup) -> None:
        (tmp / name).write_text(text)
    return setup


def prior_file(values):
    def setup(tmp: Path, run: Path, cleanup) -> None:
        np.save(tmp / "prior.npy", np.asarray(values, dtype=np.float64))
    return setup


def missing_folder_catalog(tmp: Path, run: Path, cleanup) -> None:
    catalog = {"my_images": {"train": str(tmp / "no_such_folder"), "val": str(tmp / "no_such_folder")}}
    (tmp / "catalog.json").write_text(json.dumps(catalog))


def locked_by_a_live_process(tmp: Path, run: Path, cleanup) -> Dict[str, object]:
    # The lock names another live process of this host (a run in this very process would take its own stale lock over).
    holder = subprocess.Popen(["sleep", "300"])
    cleanup.callback(holder.wait)
    cleanup.callback(holder.kill)
    lock = RunLock(str(run))
    lock.identity.update(pid=holder.pid, pid_start=_process_start_time(holder.pid))
    lock.acquire()
    cleanup.callback(lock.release)
    return {"pid": holder.pid}


def unreadable_checkpoints(tmp: Path, run: Path, cleanup) -> None:
    (run / "checkpoints").mkdir(parents=True)
    for iteration in (2, 4):
        (run / "checkpoints" / f"model_iteration{iteration:08d}.torch").write_bytes(b"not a checkpoint" * 8)


def finished_two_epochs(tmp: Path, run: Path, cleanup) -> None:
    assert main([*TINY, f"config.CHECKPOINT.DIR={run}", *TWO_EPOCHS]) == 0
    assert json.loads((run / "DONE").read_text())["epoch"] == 2


def snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


_ = pytest.param
CASES = [
    # ------------------------------------------------------------------ keys and types
    _(Case(["config.OPTIMIZER.NUM_EPOCH=3"], ["config.OPTIMIZER.NUM_EPOCH", "Did you mean 'config.OPTIMIZER.NUM_EPOCHS'?"]),
      id="unknown_key_suggests_the_closest"),
    _(Case(["config={tmp}/typo.yaml"], ["'config.OPTIMIZER.NUM_EPOCH' (in {tmp}/typo.yaml)", "NUM_EPOCHS"],
           setup=write("typo.yaml", "config:\n  OPTIMIZER:\n    NUM_EPOCH: 3\n")), id="unknown_key_in_a_yaml_names_the_file"),
    _(Case(["config.OPTIMIZER.NUM_EPOCHS=abc"], ["'config.OPTIMIZER.NUM_EPOCHS' = 'abc'", "expected int"]), id="wrong_type"),
    _(Case(["config.OPTIMIZER.BASE_LR=null"], ["'config.OPTIMIZER.BASE_LR' is null", "default 0.1"]), id="null_for_a_key_with_a_default"),
    _(Case(["config.CHECKPOINT.DIR="], ["'config.CHECKPOINT.DIR' = ''", "must not be empty"]), id="checkpoint_dir_empty"),
    _(Case(["config.CHECKPOINT.DIR=null"], ["'config.CHECKPOINT.DIR' is null"]), id="checkpoint_dir_null"),
    _(Case(["config={tmp}/required.yaml"], ["'config.LOSS.PARAMS.temperature' is required", "???"],
           setup=write("required.yaml", "config:\n  LOSS:\n    PARAMS:\n      temperature: ???\n")), id="required_value_left_unset"),
    _(Case(["config.OPTIMIZER.BASE_LR=${{config.NO_SUCH_KEY}}"], ["'config.OPTIMIZER.BASE_LR'", "config.NO_SUCH_KEY"]),
      id="interpolation_pointing_nowhere"),
    # ------------------------------------------------------------------ ranges and choices
    _(Case(["config.OPTIMIZER.NUM_EPOCHS=0"], ["'config.OPTIMIZER.NUM_EPOCHS' = 0", ">= 1"]), id="num_epochs_0"),
    _(Case(["config.OPTIMIZER.BASE_LR=0"], ["'config.OPTIMIZER.BASE_LR' = 0", "> 0"]), id="base_lr_0"),
    _(Case(["config.OPTIMIZER.BASE_LR=-0.1"], ["'config.OPTIMIZER.BASE_LR' = -0.1", "> 0"]), id="base_lr_negative"),
    _(Case(["config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=0"], ["'config.DATA.TRAIN.BATCHSIZE_PER_REPLICA' = 0", ">= 1"]), id="batch_size_0"),
    _(Case(["config.DATA.NUM_DATALOADER_WORKERS=-1"], ["'config.DATA.NUM_DATALOADER_WORKERS' = -1", ">= 0"]), id="workers_negative"),
    _(Case(["config.MODEL.EMA_TEACHER.MOMENTUM_START=1.5"], ["'config.MODEL.EMA_TEACHER.MOMENTUM_START' = 1.5", "<= 1"]),
      id="ema_momentum_above_1"),
    # 0 turns iteration checkpoints off, -1 too (the old spelling); any other negative is a mistake.
    _(Case(["config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=-5"], ["'config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY' = -5", "(or -1)"]),
      id="checkpoint_iter_frequency_negative"),
    _(Case(["config.HOOKS.LOG_FREQUENCY=0"], ["'config.HOOKS.LOG_FREQUENCY' = 0"]), id="log_frequency_0"),
    _(Case(["config.DATA.TRAIN.DATA_SOURCES=[]"], ["'config.DATA.TRAIN.DATA_SOURCES' = []", "must not be empty"]), id="no_data_source"),
    _(Case(["config.MACHINE.DEVICE=tpu"], ["'config.MACHINE.DEVICE' = 'tpu'", "auto, cpu, cuda"]), id="device_tpu"),
    _(Case(["config.MODEL.AMP.DTYPE=float8"], ["'config.MODEL.AMP.DTYPE' = 'float8'", "bfloat16, float16"]), id="amp_dtype_float8"),
    _(Case(["config.DISTRIBUTED.BACKEND=mpi"], ["'config.DISTRIBUTED.BACKEND' = 'mpi'", "gloo"]), id="backend_mpi"),
    _(Case(["config.OPTIMIZER.LR_SCHEDULE.WARMUP_EPOCHS=5"], ["config.OPTIMIZER.LR_SCHEDULE", "warm-up must be shorter"]),
      id="warmup_longer_than_training"),
    _(Case(["config.OPTIMIZER.LR_SCHEDULE.NAME=cosin"], ["config.OPTIMIZER.LR_SCHEDULE", "'cosin'", "cosine"]), id="unknown_lr_schedule"),
    # ------------------------------------------------------------------ paths that must exist
    # DATA_PATHS are checked by the data source when it is built (full-scale configs name cluster paths).
    _(Case(["~config.DATA.TRAIN.SOURCE_PARAMS", "config.DATA.TRAIN.DATA_SOURCES=[disk_folder]",
            "config.DATA.TRAIN.DATA_PATHS=[{tmp}/no_such_folder]"],
           ["config.DATA.TRAIN", "DATA_PATHS", "{tmp}/no_such_folder"], stops_before_the_run=False),
      id="data_paths_missing_folder"),
    _(Case(["config.MODEL.WEIGHTS_INIT.PARAMS_FILE={tmp}/no_such.torch"], ["'config.MODEL.WEIGHTS_INIT.PARAMS_FILE'", "{tmp}/no_such.torch"]),
      id="weights_init_file_missing"),
    _(Case(["config.ENGINE_NAME=extract_features", "config.MODEL.WEIGHTS_INIT.PARAMS_FILE={tmp}/weights.torch"],
           ["MODEL.WEIGHTS_INIT.PARAMS_FILE='{tmp}/weights.torch' could not be read"],
           setup=write("weights.torch", "not a checkpoint"), stops_before_the_run=False), id="weights_init_file_unreadable"),
    _(Case(["config.ENGINE_NAME=extract_features", "config.MODEL.WEIGHTS_INIT.PARAMS_FILE={tmp}"],
           ["MODEL.WEIGHTS_INIT.PARAMS_FILE='{tmp}' is a directory without checkpoints"], stops_before_the_run=False),
      id="weights_init_run_dir_without_checkpoints"),
    _(Case(["config.DATA.DATASET_CATALOG={tmp}/no_such_catalog.json"], ["'config.DATA.DATASET_CATALOG'", "{tmp}/no_such_catalog.json"]),
      id="dataset_catalog_missing"),
    _(Case(["~config.DATA.TRAIN.SOURCE_PARAMS", "config.DATA.TRAIN.DATA_SOURCES=[disk_folder]", "config.DATA.TRAIN.DATASET_NAMES=[my_images]",
            "config.DATA.DATASET_CATALOG={tmp}/catalog.json"],
           ["config.DATA.TRAIN", "disk_folder", "{tmp}/no_such_folder", "my_images"], setup=missing_folder_catalog,
           stops_before_the_run=False), id="disk_folder_on_a_missing_folder_from_the_catalog"),
    # ------------------------------------------------------------------ plugins: names and parameter values
    _(Case(["config.LOSS.PARAMS.temperature=0"], ["config.LOSS.PARAMS.temperature", "simclr_loss", "> 0"]), id="loss_temperature_0"),
    _(Case(["config.LOSS.NAME=simclr"], ["config.LOSS", "Did you mean 'simclr_loss'?"]), id="unknown_loss_suggests_the_closest"),
    _(Case(["config.LOSS.PARAMS.no_such_param=1"], ["config.LOSS", "no parameter 'no_such_param'", "temperature"]), id="unknown_loss_param"),
    _(Case(["config.MODEL.TRUNK.PARAMS.widths=[-8,16]"], ["config.MODEL.TRUNK.PARAMS.widths", "small_cnn", "[-8, 16]"]), id="bad_trunk_params"),
    _(Case(["config.MODEL.HEADS.0.PARAMS.dims=[0,16]"], ["config.MODEL.HEADS[0].PARAMS.dims", "[0, 16]"]), id="bad_head_params"),
    _(Case(["config.DATA.TRAIN.TRANSFORM.PARAMS.size=-1"], ["config.DATA.TRAIN.TRANSFORM.PARAMS.size", "two_view"]), id="bad_transform_params"),
    _(Case(["config.OPTIMIZER.PARAMS.momentum=-3"], ["config.OPTIMIZER.PARAMS.momentum", "sgd", "-3"]), id="bad_optimizer_momentum"),
    _(Case(["config.OPTIMIZER.NAME=adam"], ["config.OPTIMIZER", "Did you mean 'adamw'?"]), id="unknown_optimizer"),
    _(Case(["+config.LOSS_SCHEDULES.temperature={{NAME: linear, START: 0.2, END: -0.1}}"],
           ["config.LOSS_SCHEDULES.temperature.END = -0.1", "temperature must be > 0"]), id="loss_schedule_to_a_negative_temperature"),
    _(Case(["+config.LOSS_SCHEDULES.temprature={{NAME: linear, START: 0.2, END: 0.1}}"],
           ["config.LOSS_SCHEDULES.temprature", "no hyper-parameter 'temprature'"]), id="loss_schedule_of_an_unknown_attribute"),
    _(Case(["config.MODEL.STUDENT_VIEWS=[0,5]"], ["config.MODEL.STUDENT_VIEWS = [0, 5]", "view 5", "makes 2 views"]),
      id="student_view_the_transform_does_not_make"),
    _(Case(PMSN_FROM_FILE, ["config.LOSS.PARAMS.prior", "from_file", "{tmp}/prior.npy", "does not exist"]), id="pmsn_prior_file_missing"),
    _(Case(PMSN_FROM_FILE, ["config.LOSS.PARAMS.prior", "{tmp}/prior.npy", "finite counts >= 0"], setup=prior_file([5.0, -1.0, 2.0])),
      id="pmsn_prior_file_negative_count"),
    _(Case(PMSN_FROM_FILE, ["config.LOSS.PARAMS.prior", "{tmp}/prior.npy", "finite counts >= 0"], setup=prior_file([5.0, np.nan, 2.0])),
      id="pmsn_prior_file_nan_count"),
    _(Case(["config.DATA.TRAIN.SAMPLER.NAME=class_imbalanced", "config.DATA.TRAIN.SAMPLER.PARAMS.classes_per_batch=8"],
           ["config.DATA.TRAIN.SAMPLER.PARAMS.classes_per_batch", "classes_per_batch=8", "only 4 classes"], stops_before_the_run=False),
      id="sampler_classes_per_batch_above_the_dataset_classes"),
    _(Case(["config.DATA.TRAIN.SAMPLER.NAME=class_balancd"], ["config.DATA.TRAIN.SAMPLER", "Did you mean 'class_balanced'"]), id="unknown_sampler"),
    _(Case(["config.ENGINE_NAME=trian"], ["config.ENGINE_NAME", "Did you mean 'train'?"]), id="unknown_engine"),
    _(Case(["config.PLUGINS=[no_such_plugin_module]"], ["config.PLUGINS", "no_such_plugin_module"]), id="plugin_module_missing"),
    # ------------------------------------------------------------------ the machine
    _(Case(["config.DISTRIBUTED.NUM_PROC_PER_NODE=64"], ["config.DISTRIBUTED.NUM_PROC_PER_NODE=64", "Use at most"]), id="num_proc_per_node_64"),
    # One past the last visible GPU: cuda:0 on a CPU-only machine.
    _(Case([f"config.MACHINE.DEVICE=cuda:{GPUS}"], [f"config.MACHINE.DEVICE=cuda:{GPUS}", "visible"]), id="cuda_device_not_on_this_machine"),
    _(Case(["config.MODEL.AMP.ENABLED=true", "config.MODEL.AMP.DTYPE=float16", "config.MACHINE.DEVICE=cpu"],
           ["config.MODEL.AMP.DTYPE=float16 needs CUDA", "bfloat16"], stops_before_the_run=False), id="amp_float16_on_cpu"),
    _(Case(["config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=256"], ["config.DATA.TRAIN.SAMPLER", "128 samples", "BATCHSIZE_PER_REPLICA"],
           stops_before_the_run=False), id="batch_larger_than_the_dataset"),
    _(Case(["config.OPTIMIZER.ACCUMULATE_GRAD_STEPS=64"], ["8 batches", "config.OPTIMIZER.ACCUMULATE_GRAD_STEPS=64"],
           stops_before_the_run=False), id="accumulating_more_steps_than_an_epoch_has"),
    # ------------------------------------------------------------------ malformed files and overrides
    _(Case(["config={tmp}/broken.yaml"], ["Not valid YAML", "{tmp}/broken.yaml", "line 3"],
           setup=write("broken.yaml", "config:\n  SEED_VALUE: [1,\n")), id="yaml_broken_syntax"),
    _(Case(["config={tmp}/list.yaml"], ["{tmp}/list.yaml holds a list", "'config:'"], setup=write("list.yaml", "- a\n- b\n")), id="yaml_a_list"),
    _(Case(["config={tmp}/empty.yaml"], ["{tmp}/empty.yaml is empty"], setup=write("empty.yaml", "")), id="yaml_empty_file"),
    _(Case(["config={tmp}/number.yaml"], ["{tmp}/number.yaml", "'config:' holds a int"], setup=write("number.yaml", "config: 3\n")),
      id="yaml_config_is_a_number"),
    _(Case(["config={tmp}/tabs.yaml"], ["Not valid YAML", "'\\t'", "{tmp}/tabs.yaml", "line 2"],
           setup=write("tabs.yaml", "config:\n\tSEED_VALUE: 1\n")), id="yaml_tab_indentation"),
    _(Case(["config={tmp}/twice.yaml"], ["duplicate key SEED_VALUE", "{tmp}/twice.yaml"],
           setup=write("twice.yaml", "config:\n  SEED_VALUE: 1\n  SEED_VALUE: 2\n")), id="yaml_duplicate_key"),
    _(Case(["config={tmp}/outside.yaml"], ["{tmp}/outside.yaml", "unexpected top-level keys ['OPTIMIZER']"],
           setup=write("outside.yaml", "config:\n  SEED_VALUE: 1\nOPTIMIZER:\n  BASE_LR: 0.1\n")), id="yaml_key_outside_config"),
    _(Case(["config={tmp}/defaults.yaml"], ["{tmp}/defaults.yaml", "config/pretrain/no_such/config"],
           setup=write("defaults.yaml", "defaults:\n  - /config/pretrain/no_such/config@_here_\n  - _self_\nconfig:\n  SEED_VALUE: 1\n")),
      id="yaml_defaults_entry_missing"),
    _(Case(["config={tmp}/no_such.yaml"], ["config={tmp}/no_such.yaml", "no such YAML file"]), id="yaml_file_missing"),
    _(Case(["config.OPTIMIZER.BASE_LR=[1,"], ["config.OPTIMIZER.BASE_LR=[1,", "cannot be parsed"]), id="malformed_override"),
    # ------------------------------------------------------------------ the run directory
    _(Case([], ["{run}", "in use by another live run", "pid {pid}", LOCK_FILE], setup=locked_by_a_live_process, stops_before_the_run=False),
      id="run_dir_locked_by_a_live_process"),
    _(Case([], ["None of the 2 checkpoints", "model_iteration00000002.torch", "model_iteration00000004.torch",
                "config.CHECKPOINT.ON_UNREADABLE=start_over"], setup=unreadable_checkpoints, stops_before_the_run=False),
      id="all_checkpoints_unreadable"),
    _(Case([*TWO_EPOCHS, "config.OPTIMIZER.NUM_EPOCHS=1"], ["already finished 2 epochs", "config.OPTIMIZER.NUM_EPOCHS=1", "Nothing was changed"],
           setup=finished_two_epochs, stops_before_the_run=False), id="finished_run_relaunched_with_fewer_epochs"),
    # ------------------------------------------------------------------ a run that stops itself (exit code 1)
    _(Case(["config.OPTIMIZER.MAX_ITERATIONS=-1", "config.OPTIMIZER.BASE_LR=1.0e+9"],
           ["Non-finite loss", "Last good checkpoint", "Lower config.OPTIMIZER.BASE_LR"], exit_code=1, stops_before_the_run=False),
      id="diverging_run_stops_itself"),
]


def case_argv(case: Case, tmp: Path, run: Path, values: Dict[str, object]) -> list:
    own = [a.format(tmp=tmp, run=run, **values) for a in case.argv]
    picks_its_config = any(a.startswith("config=") for a in own)
    base = [a for a in TINY if not (picks_its_config and a.startswith("config="))]
    return [*base, f"config.CHECKPOINT.DIR={run}", *own]


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_stops_with_one_message_naming_it(case, tmp_path, capfd):
    run = tmp_path / "run"
    with contextlib.ExitStack() as cleanup:
        values = (case.setup(tmp_path, run, cleanup) if case.setup else None) or {}
        capfd.readouterr()
        before = snapshot(run)
        code = main(case_argv(case, tmp_path, run, values))
        out, err = capfd.readouterr()
        assert code == case.exit_code, err
        assert "Traceback" not in err and "Traceback" not in out, err
        assert len(error_lines(err)) == 1, err
        message = err[err.index("error:"):]
        for fragment in case.fragments:
            assert fragment.format(tmp=tmp_path, run=run, **values) in message, message
        # Refused: what the run directory held is untouched, and no lock of this launch is left behind.
        after = snapshot(run)
        assert {name: after.get(name) for name in before} == before
        if LOCK_FILE not in before:
            assert not (run / LOCK_FILE).exists()
        if case.stops_before_the_run:
            assert not run.exists(), "validation let the run start"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback_of_a_user_error(how, tmp_path, monkeypatch):
    argv = [*TINY, f"config.CHECKPOINT.DIR={tmp_path / 'run'}", "config.OPTIMIZER.BASE_LR=0"]
    if how == "flag":
        argv.append("--debug")
    else:
        monkeypatch.setenv("SSL_EXT_DEBUG", "1")
    with pytest.raises(ConfigError, match="config.OPTIMIZER.BASE_LR"):
        main(argv)


# ---------------------------------------------------------------------------------------------------- real processes
PROCESS_CASES = {
    "validation_error": (["config.OPTIMIZER.BASE_LR=-0.1"], "'config.OPTIMIZER.BASE_LR' = -0.1"),
    "num_proc_per_node_64": (["config.DISTRIBUTED.NUM_PROC_PER_NODE=64"], "config.DISTRIBUTED.NUM_PROC_PER_NODE=64"),
    # Raised while each of 2 ranks builds its sampler (the dataset's classes are known only then).
    "error_inside_a_2_rank_run": (["config.DISTRIBUTED.NUM_PROC_PER_NODE=2", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=8",
                                   "config.DATA.TRAIN.SAMPLER.NAME=class_imbalanced",
                                   "config.DATA.TRAIN.SAMPLER.PARAMS.classes_per_batch=8"],
                                  "config.DATA.TRAIN.SAMPLER.PARAMS.classes_per_batch"),
}


@pytest.fixture(scope="module")
def process_results(tmp_path_factory):
    """The three commands run at the same time (each is mostly interpreter start-up)."""
    started = {}
    for name, (overrides, _) in PROCESS_CASES.items():
        run = tmp_path_factory.mktemp(name) / "run"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("SSL_EXT_DEBUG", None)
        process = subprocess.Popen([sys.executable, str(RUN_SCRIPT), *TINY, f"config.CHECKPOINT.DIR={run}", *overrides],
                                   cwd=run.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started[name] = (process, run, time.monotonic())
    results = {}
    try:
        for name, (process, run, start) in started.items():
            out, err = process.communicate(timeout=300)
            results[name] = (process.returncode, out, err, run, time.monotonic() - start)
    finally:
        for process, _, _ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.parametrize("name", list(PROCESS_CASES))
def test_a_real_process_exits_2_with_one_message_and_no_traceback(name, process_results):
    code, out, err, run, seconds = process_results[name]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.startswith("error:") and err.count("\n") == 1, err  # the message and nothing else, from 1 or 2 ranks
    assert PROCESS_CASES[name][1] in err
    if name == "error_inside_a_2_rank_run":
        assert not (run / LOCK_FILE).exists()  # rank 0 released the lock on its way out
    else:
        assert not run.exists()  # refused before any rank started
    if name == "num_proc_per_node_64":
        # Started with the validation error's command: refused as fast, no 64 interpreters started first.
        assert seconds < 2 * process_results["validation_error"][4] + 10
