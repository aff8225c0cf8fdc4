"""``ssl-ext-run <subcommand>``: every tool is reachable from the installed entry point and from tools/."""
import importlib
from pathlib import Path

import pytest

from ssl_ext.cli import main
from ssl_ext.tools import SUBCOMMANDS

REPO_TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_resolves_and_its_repository_script_runs_the_same_function(name):
    module_name, function = SUBCOMMANDS[name][0].split(":")
    entry = getattr(importlib.import_module(module_name), function)
    assert callable(entry)
    script = REPO_TOOLS / (module_name.rsplit(".", 1)[1] + ".py")
    assert f"from ssl_ext.tools.{script.stem} import" in script.read_text() and f"sys.exit({function}())" in script.read_text()


def test_subcommand_gets_the_remaining_arguments_and_returns_its_exit_status(tmp_path, capsys):
    status = main(["prepare-clevr", "--input", str(tmp_path / "missing"), "--task", "count", "--output", str(tmp_path / "out")])
    assert status == 2
    assert "error: scene file" in capsys.readouterr().err


def test_subcommand_help_names_the_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare-kitti", "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ssl-ext-run prepare-kitti")
