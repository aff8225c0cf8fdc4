"""Extending ssl_ext without editing it: an installed package (``ssl_ext.plugins`` entry point) and a
module listed under ``PLUGINS:``, each adding a loss and a hook that a run configured purely from a
YAML file trains with.

The fixtures live in tests/fixtures/external_plugin. Runs go through the real command line in a fresh
process, because entry points and PYTHONPATH are read at interpreter start-up.
"""
import importlib.util
import json

import pytest

from external_plugin_testing import LISTED_PLUGIN_DIR, read_jsonl, run_cli, write_run_yaml
from ssl_ext.config import ConfigError, compose_config

ENTRY_POINT_LOSS = "{NAME: example_alignment_uniformity_loss, PARAMS: {uniformity_weight: 0.5, t: 2.0}}"
ENTRY_POINT_HOOKS = "[{NAME: example_update_counter, PARAMS: {filename: counts.json}}]"
LISTED_LOSS = "{NAME: example_cosine_distance_loss, PARAMS: {scale: 2.0}}"
LISTED_HOOKS = "[{NAME: example_loss_recorder, PARAMS: {filename: recorded.jsonl}}]"


def check_ran(result):
    assert result.returncode == 0, f"run failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"


def test_installed_package_plugins_load_through_the_entry_point_and_train(example_plugin_site, tmp_path):
    run_dir = tmp_path / "run"
    config = write_run_yaml(tmp_path / "entry_point_run.yaml", run_dir, ENTRY_POINT_LOSS, ENTRY_POINT_HOOKS)

    # Nothing in the YAML or on the command line names the package: the entry point alone registers it.
    check_ran(run_cli([f"config={config}"], cwd=tmp_path, python_paths=[example_plugin_site]))

    counts = json.loads((run_dir / "counts.json").read_text())
    assert counts["steps"] == counts["updates"] == counts["final_iteration"] == 4  # MAX_ITERATIONS from the YAML
    assert counts["loss_class"] == "ssl_ext_example_plugin.alignment_uniformity_loss.AlignmentUniformityLoss"
    # The installed copy was used, not the fixture's source tree.
    assert counts["loss_file"].startswith(str(example_plugin_site))

    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    for record in records:
        # The trained loss is the plugin's: its named terms are logged and combine with the YAML's weight.
        assert record["loss"] == pytest.approx(record["alignment"] + 0.5 * record["uniformity"], rel=1e-5, abs=1e-6)
        assert 0.0 <= record["alignment"] <= 4.0  # squared distance of unit vectors
        assert record["uniformity"] <= 0.0  # log of a mean of exp(-t d^2) <= 1
    last_terms = {k: records[-1][k] for k in ("loss", "alignment", "uniformity")}
    assert counts["last_loss_terms"] == last_terms


def test_entry_point_plugins_are_unknown_without_the_installed_package(tmp_path):
    # The pytest process does not have the fixture package on its path: the same YAML is rejected before
    # anything runs, with the hint that a third-party plugin must be installed or listed.
    config = write_run_yaml(tmp_path / "entry_point_run.yaml", tmp_path / "run", ENTRY_POINT_LOSS, ENTRY_POINT_HOOKS)
    with pytest.raises(ConfigError) as info:
        compose_config([f"config={config}"])
    message = str(info.value)
    assert "example_alignment_uniformity_loss" in message and "PLUGINS" in message
    assert not (tmp_path / "run").exists()


def test_module_listed_under_plugins_registers_its_loss_and_hook_and_trains(tmp_path):
    run_dir = tmp_path / "run"
    config = write_run_yaml(
        tmp_path / "listed_run.yaml", run_dir, LISTED_LOSS, LISTED_HOOKS, plugins="[ssl_ext_listed_plugin]"
    )

    # The module is importable (PYTHONPATH) but not installed: only the YAML's PLUGINS list imports it.
    check_ran(run_cli([f"config={config}"], cwd=tmp_path, python_paths=[LISTED_PLUGIN_DIR]))

    recorded = read_jsonl(run_dir / "recorded.jsonl")
    logged = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in recorded] == [1, 2, 3, 4]
    # The hook saw exactly the loss terms the trainer logged, and they are the plugin loss's terms.
    assert recorded == [{k: r[k] for k in ("iteration", "loss", "mean_cosine")} for r in logged]
    for record in recorded:
        assert -1.0 <= record["mean_cosine"] <= 1.0
        assert record["loss"] == pytest.approx(2.0 * (1.0 - record["mean_cosine"]), rel=1e-5, abs=1e-6)
    assert "ssl_ext_listed_plugin" in (run_dir / "train_config.yaml").read_text()


def test_listed_plugin_module_that_cannot_be_imported_is_named(tmp_path):
    config = write_run_yaml(
        tmp_path / "listed_run.yaml", tmp_path / "run", LISTED_LOSS, LISTED_HOOKS, plugins="[ssl_ext_listed_plugin]"
    )
    # The fixture folder is not on this process's path, so the PLUGINS entry cannot be imported.
    assert importlib.util.find_spec("ssl_ext_listed_plugin") is None
    with pytest.raises(ConfigError) as info:
        compose_config([f"config={config}"])
    message = str(info.value)
    assert "'ssl_ext_listed_plugin'" in message and "config.PLUGINS" in message
