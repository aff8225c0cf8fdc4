"""The README's main job, shortened: long-tailed digits -> MSN and PMSN -> linear probe -> table."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_end_to_end_and_reports_head_medium_tail(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "demo.py"), "--out", str(out), "--epochs", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| MSN (uniform prior) |" in proc.stdout and "| PMSN (power-law prior" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 2
    for row in results.values():
        # 10 balanced val classes: chance is 10 %; even one epoch of pretraining gives a usable probe.
        assert 20.0 < row["top1"] <= 100.0
        assert {"head", "medium", "tail"} <= set(row)
    for method in ("msn", "pmsn"):
        run_dir = out / method
        assert (run_dir / "train_config.yaml").exists()
        assert (run_dir / "training_curves.png").exists()
        assert (run_dir / "linear_eval" / "results.md").exists()
        histogram = [p for p in os.listdir(run_dir) if "histogram" in p or "class_counts" in p]
        assert histogram, os.listdir(run_dir)
