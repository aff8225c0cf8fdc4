"""The wheel as a user installs it (not ``-e``): built from a copy of the sources, installed into a fresh
folder, and run from another directory with nothing of the repository on the path.

The environment's Python provides the dependencies; the installed folder comes first on PYTHONPATH,
and each run checks that ``ssl_ext`` and its configs were loaded from there, not from the checkout.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("setup.py", "README.md", "registry", "ssl_ext", "configs_yaml")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site folder, environment)`` of the wheel installed with ``pip install --no-deps --target``."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build's build/ and egg-info never touch the shared checkout
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
                   check=True, cwd=root)
    (wheel,) = glob.glob(str(root / "dist" / "ssl_ext-*.whl"))
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), wheel], check=True, cwd=root)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop("SSL_EXT_CONFIGS", None)
    return site, wheel, env


def run(installed, tmp_path, *args):
    site, _, env = installed
    script = site / "bin" / "ssl-ext-run"
    result = subprocess.run([str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_wheel_ships_every_config_next_to_the_package(installed):
    _, wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name[len("ssl_ext/_configs/"):] for name in archive.namelist() if name.startswith("ssl_ext/_configs/")}
    in_repo = {str(p.relative_to(REPO / "configs_yaml")) for p in (REPO / "configs_yaml").rglob("*")
               if p.is_file() and p.suffix in (".yaml", ".json")}
    assert "defaults.yaml" in shipped and "datasets/catalog.json" in shipped
    assert in_repo <= shipped, sorted(in_repo - shipped)


def test_python_finds_the_installed_package_before_the_checkouts_editable_install(installed, tmp_path):
    site, _, env = installed
    # find_spec resolves through the same finders as an import, without running ssl_ext's imports.
    probe = "import importlib.util; print(importlib.util.find_spec('ssl_ext').origin)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert Path(result.stdout.strip()) == site / "ssl_ext" / "__init__.py"
    # So config_root() of that copy is its shipped folder (there is no configs_yaml/ beside it).
    assert (site / "ssl_ext" / "_configs" / "defaults.yaml").is_file() and not (site.parent / "configs_yaml").exists()


def test_console_script_help_lists_the_tools_and_a_tool_runs(installed, tmp_path):
    listing = run(installed, tmp_path, "--help")
    for subcommand in ("prepare-imagenet", "prepare-cifar100", "benchmark-suite", "cluster-analysis",
                       "reproduce-hidden-prior", "demo"):
        assert subcommand in listing
    assert "usage: ssl-ext-run prepare-cifar100" in run(installed, tmp_path, "prepare-cifar100", "--help")


def test_print_config_and_a_tiny_training_from_outside_the_repository(installed, tmp_path):
    printed = run(installed, tmp_path, "config=pretrain/simclr/simclr_cpu_tiny", "--print-config")
    assert "NAME: simclr_loss" in printed and "BATCHSIZE_PER_REPLICA: 64" in printed

    run_dir = tmp_path / "run"
    run(installed, tmp_path, "config=pretrain/simclr/simclr_cpu_tiny", "config.OPTIMIZER.MAX_ITERATIONS=2",
        f"config.CHECKPOINT.DIR={run_dir}", "config.HOOKS.LOG_FREQUENCY=1", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
        "config.HOOKS.PLOT_CURVES=false", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=16", "config.MACHINE.NUM_THREADS=1")
    with open(run_dir / "metrics.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    assert len(losses) == 2
    assert json.loads((run_dir / "DONE").read_text())["iteration"] == 2
    assert (run_dir / "train_config.yaml").is_file() and glob.glob(str(run_dir / "checkpoints" / "*.torch"))
