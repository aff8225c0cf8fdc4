"""The W&B and MLflow hooks on real tiny training runs, read back from what each tracker stored:
W&B in offline mode (its run file parsed), MLflow in a local file store (through its client)."""
import glob
import json
import os

import pytest
import yaml

from ssl_ext.config import compose_config
from ssl_ext.hooks._tracking import require_package
from ssl_ext.launch.local import launch

from wandb_offline import read_offline_run

TINY = ["config=demo/tiny_synthetic", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.LOG_FREQUENCY=1"]


def train(run_dir, *overrides, iterations=3):
    return launch(compose_config([*TINY, f"config.CHECKPOINT.DIR={run_dir}",
                                  f"config.OPTIMIZER.MAX_ITERATIONS={iterations}", *overrides]))


def jsonl_scalars(run_dir):
    """``{name: [(iteration, value), ...]}`` of every numeric entry of metrics.jsonl (the trackers' reference)."""
    series = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for record in map(json.loads, filter(str.strip, f)):
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    series.setdefault(key, []).append((record["iteration"], float(value)))
    return series


def saved_config(run_dir):
    with open(os.path.join(run_dir, "train_config.yaml")) as f:
        return yaml.safe_load(f)


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb_home"))


def test_wandb_offline_run_holds_the_jsonl_scalars_the_config_and_the_plots(tmp_path, offline_wandb):
    run_dir = tmp_path / "run"
    train(run_dir, "config.HOOKS.WANDB.ENABLED=true", "config.HOOKS.WANDB.PROJECT=ssl_ext_tests")
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    (run_folder,) = glob.glob(str(run_dir / "wandb" / f"offline-run-*-{run_id}"))
    logged = read_offline_run(os.path.join(run_folder, f"run-{run_id}.wandb"))
    assert logged["run_id"] == run_id

    expected = jsonl_scalars(run_dir)
    assert {"loss", "lr", "epoch"} <= set(expected)
    for name, points in expected.items():
        assert [(step, logged["history"][step][name]) for step, _ in points] == points, name
    assert logged["config"]["config"] == saved_config(run_dir)["config"]

    final_row = logged["history"][3]  # W&B stores the image's fields as flattened keys
    assert final_row["plots/training_curves/_type"] == "image-file"
    image = os.path.join(run_folder, "files", final_row["plots/training_curves/path"])
    assert os.path.getsize(image) > 1000
    assert os.path.exists(os.path.join(run_folder, "files", "train_config.yaml"))


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    # MLflow 3 keeps the file store for local use behind this switch.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


def test_mlflow_run_holds_the_jsonl_scalars_the_config_and_the_plots_and_resumes(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    settings = ["config.HOOKS.MLFLOW.ENABLED=true", f"config.HOOKS.MLFLOW.TRACKING_URI={mlflow_store}",
                "config.HOOKS.MLFLOW.EXPERIMENT=ssl_ext_tests"]
    train(run_dir, *settings, iterations=3)
    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "ssl_ext_tests"

    def history(name):
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))

    expected = jsonl_scalars(run_dir)
    for name, points in expected.items():
        assert history(name) == sorted(points), name
    config = saved_config(run_dir)["config"]
    assert run.data.params["config.OPTIMIZER.BASE_LR"] == str(config["OPTIMIZER"]["BASE_LR"])
    assert run.data.params["config.LOSS.NAME"] == "simclr_loss"
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"train_config.yaml", "plots/training_curves.png"} <= artifacts
    stored_config = client.download_artifacts(run_id, "train_config.yaml", str(tmp_path))
    with open(stored_config) as f:
        assert yaml.safe_load(f)["config"] == config

    # A relaunch asking for more iterations resumes the training and continues the same MLflow run.
    train(run_dir, *settings, iterations=5)
    assert (run_dir / "mlflow_run_id.txt").read_text().strip() == run_id
    assert [step for step, _ in history("loss")] == [1, 2, 3, 4, 5]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_missing_tracker_package_fails_at_build_time_with_the_install_command():
    with pytest.raises(ImportError, match=r"config.HOOKS.WANDB.ENABLED=true needs .*pip install 'ssl_ext\[wandb\]'"):
        require_package("surely_not_an_installed_module", "wandb", "config.HOOKS.WANDB.ENABLED")
