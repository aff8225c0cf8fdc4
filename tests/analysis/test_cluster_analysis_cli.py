"""tools/cluster_analysis.py on an MSN checkpoint (real digits images): k-means, prototypes, report files."""
import json
import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import cluster_analysis as cli  # noqa: E402


@pytest.fixture(scope="module")
def msn_run(tmp_path_factory):
    """A run dir with train_config.yaml and a checkpoint holding student, teacher and loss (prototypes) state."""
    from ssl_ext.config import compose_config
    from ssl_ext.config.compose import save_config
    from ssl_ext.engine.builders import build_loss, build_model
    from ssl_ext.utils.io import atomic_torch_save

    run_dir = tmp_path_factory.mktemp("msn_run")
    cfg = compose_config(["config=pretrain/msn/msn_cpu_tiny", f"config.CHECKPOINT.DIR={run_dir}", "config.MACHINE.DEVICE=cpu"])
    save_config(cfg, str(run_dir / "train_config.yaml"))
    torch.manual_seed(0)
    model, loss = build_model(cfg), build_loss(cfg)
    atomic_torch_save({"model": model.state_dict(), "teacher": model.state_dict(), "loss": loss.state_dict()},
                      str(run_dir / "checkpoints" / "model_iteration00000005.torch"))
    return run_dir


def test_cli_analyses_a_run_dir_with_prototypes(msn_run, tmp_path, capsys):
    out = tmp_path / "analysis"
    code = cli.main([str(msn_run), "--source", "teacher", "--clusters-per-class", "1,2", "--k", "7", "--out", str(out),
                     "config.ANALYSIS.NULL_DRAWS=20", "config.ANALYSIS.KMEANS.NITER=10", "config.ANALYSIS.KMEANS.NREDO=1"])
    assert code == 0, capsys.readouterr().err[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert result["weights"].endswith("model_iteration00000005.torch") and result["split"] == "train"
    rows = {(r["clustering"], r["k"]): r for r in result["rows"]}
    assert set(rows) == {("labels", 10), ("kmeans", 10), ("kmeans", 20), ("kmeans", 7),
                         ("prototype p̄ (soft)", 64), ("prototype argmax", 64)}
    details = result["details"]["layers"]
    (layer,) = details
    sizes = details[layer]["kmeans"]["10"]["sorted_sizes"]
    # Every train image of digits (1,797 x train fraction) lands in exactly one cluster.
    assert sum(sizes) == sum(details[layer]["labels"]["sorted_sizes"]) > 1000
    for key in (("kmeans", 10), ("prototype argmax", 64)):
        assert 0 < rows[key]["purity"] <= 1 and 0 <= rows[key]["nmi"] <= 1
    prototypes = result["details"]["prototypes"]
    assert sum(prototypes["soft"]["sorted_sizes"]) == pytest.approx(1.0)
    assert prototypes["prior"]["tau"] == 0.0  # MSN's implicit prior is uniform
    for name in (f"kmeans_{layer}_k10.png", f"kmeans_{layer}_k20.png", f"kmeans_{layer}_k7.png", "prototypes.png", "results.md"):
        assert (out / name).stat().st_size > 0, name
    assert "| labels |" in (out / "results.md").read_text()


def test_cli_errors_are_one_line_and_actionable(tmp_path, capsys):
    plain = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(1)}, plain)
    assert cli.main([str(plain)]) == 2
    assert "give --config" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing")]) == 2
    assert "no such file or run dir" in capsys.readouterr().err
    assert cli.main([str(tmp_path), "--config", "pretrain/msn/msn_cpu_tiny"]) == 2
    assert "without checkpoints" in capsys.readouterr().err
