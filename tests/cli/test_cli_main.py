"""The command line: ``run_distributed_engines.py config=... [overrides] [--print-config] [--help]``."""
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import registry
from ssl_ext.cli import main
from ssl_ext.config import compose_config

RUN_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "run_distributed_engines.py"
TINY = "config=demo/tiny_synthetic"


@pytest.fixture(scope="module")
def help_text():
    # capsys is function-scoped, so capture argparse's output by hand.
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    return out.getvalue()


def test_help_shows_usage_and_flags(help_text):
    assert "config=<yaml" in help_text and "--print-config" in help_text


@pytest.mark.parametrize("kind", sorted(registry.ALL_REGISTRIES))
def test_help_lists_the_registered_plugins_of_each_kind(help_text, kind):
    reg = registry.ALL_REGISTRIES[kind]
    lines = [line.strip() for line in help_text.splitlines() if line.strip().startswith(reg.plural + " ")]
    assert len(lines) == 1, f"no line for {reg.plural} in --help"
    listed = lines[0][len(reg.plural):].strip().split(", ")
    assert listed == reg.names()


def test_help_lists_the_train_engine(help_text):
    engines = next(line for line in help_text.splitlines() if line.strip().startswith("engines "))
    assert "train" in engines.split()


def test_print_config_prints_the_composed_config_and_runs_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    overrides = [TINY, f"config.CHECKPOINT.DIR={run_dir}", "config.OPTIMIZER.BASE_LR=0.3"]
    assert main([*overrides, "--print-config"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert OmegaConf.to_container(printed) == OmegaConf.to_container(compose_config(overrides))
    assert printed.config.OPTIMIZER.BASE_LR == 0.3 and printed.config.LOSS.PARAMS.temperature == 0.2
    assert not run_dir.exists()


def test_print_config_still_validates(tmp_path, capsys):
    assert main([TINY, "config.OPTIMIZER.BASE_LR=fast", "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "config.OPTIMIZER.BASE_LR" in captured.err


@pytest.mark.parametrize(
    "override,expected",
    [
        ("config.OPTIMIZER.NUM_EPOCH=3", "Did you mean 'config.OPTIMIZER.NUM_EPOCHS'?"),
        ("config.OPTIMIZER.NUM_EPOCHS=abc", "expected int"),
        ("config.LOSS.NAME=simclr", "Did you mean 'simclr_loss'?"),
        ("config.LOSS.PARAMS.temperatur=0.3", "Did you mean 'temperature'?"),
        ("config.PLUGINS=[no_such_plugin_module]", "no_such_plugin_module"),
        ("config=demo/tiny_synthetc", "Did you mean config=demo/tiny_synthetic?"),
    ],
    ids=["unknown_key", "wrong_type", "unknown_loss", "loss_param", "plugin_module", "config_file"],
)
def test_bad_input_exits_2_with_a_one_line_error(tmp_path, capsys, override, expected):
    args = [override] if override.startswith("config=") else [TINY, f"config.CHECKPOINT.DIR={tmp_path / 'run'}", override]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert not (tmp_path / "run").exists()


def test_the_script_exits_2_with_only_the_error_line_on_stderr(tmp_path):
    # A real process: the exit status, and nothing but the error line (no traceback, no warnings) on stderr.
    result = subprocess.run(
        [sys.executable, str(RUN_SCRIPT), TINY, f"config.CHECKPOINT.DIR={tmp_path / 'run'}", "config.OPTIMIZER.NUM_EPOCH=3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Did you mean 'config.OPTIMIZER.NUM_EPOCHS'?" in result.stderr
    assert result.stdout == ""
