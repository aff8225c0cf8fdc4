"""Launch the real command line in a fresh process group, let it be SIGKILLed, relaunch it, and
compare runs bit for bit.

Processes are forked from a forkserver that has already imported torch and ssl_ext (a fresh
interpreter per launch would spend most of the matrix's time importing). Each launch calls
``os.setsid()`` first, so a ``killpg`` reaches the launcher and every rank it spawned, and nothing
else.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
from typing import Any, Dict, List, Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_context = None


def _forkserver():
    global _context
    if _context is None:
        os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["torch", "ssl_ext.plugins", "ssl_ext.cli", "tests.engine.kill_hook"])
    return _context


def _run_cli(argv: Sequence[str], log_path: str) -> None:
    os.setsid()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(REPO)
    from ssl_ext.cli import main

    code = main(list(argv))
    os._exit(code)


def start_cli(argv: Sequence[str], log_path: str):
    """Start ``ssl-ext-run <argv>`` in its own process group; ``wait_cli`` collects it."""
    process = _forkserver().Process(target=_run_cli, args=(list(argv), log_path))
    process.start()
    return process


def wait_cli(process, timeout: float = 300) -> int:
    """The exit code (-9 when SIGKILLed); a run past ``timeout`` is killed and fails the test."""
    process.join(timeout)
    if process.exitcode is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.join()
        raise TimeoutError(f"a launch ran past {timeout}s")
    return process.exitcode


def launch_cli(argv: Sequence[str], log_path: str, timeout: float = 300) -> int:
    """Run ``ssl-ext-run <argv>`` in its own process group; its exit code (-9 when SIGKILLed)."""
    return wait_cli(start_cli(argv, log_path), timeout)


def metrics(run_dir: str) -> List[Dict[str, Any]]:
    """The loss records of metrics.jsonl (one per logged step), without wall-clock fields."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    timing = ("time", "sec", "img_per_s", "eta", "throughput")
    return [
        {k: v for k, v in r.items() if not any(t in k for t in timing)}
        for r in records if "loss" in r
    ]


def final_state(run_dir: str) -> Dict[str, Any]:
    from ssl_ext.engine import checkpoint as ckpt
    from ssl_ext.utils.io import torch_load

    (_, path), *_ = ckpt.list_checkpoints(run_dir)
    state = torch_load(path)
    return {k: state[k] for k in ("model", "teacher", "loss", "optimizer", "scaler", "sampler", "epoch", "iteration")}


def assert_bitwise_equal(a: Any, b: Any, where: str = "") -> None:
    """Recursively: tensors ``torch.equal`` (same dtype and shape), everything else ``==``."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max |diff| {(a.double() - b.double()).abs().max().item()}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def count_tensors(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return 1
    if isinstance(state, dict):
        return sum(count_tensors(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(count_tensors(v) for v in state)
    return 0
