"""The README's main job, shortened (digits, 1 epoch, 1 seed): floors, MSN and PMSN, the same probe, a table
that says in words whether pretraining beat its floors, and prototype usage against each prior."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(out):
    # One thread per process, as tools/run_demo.sh sets it.
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "demo.py"), "--out", str(out), "--epochs", "1", "--seeds", "0",
         "--data", "digits"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_demo_runs_end_to_end_with_floors_and_an_honest_reading(tmp_path):
    out = tmp_path / "demo"
    proc = run_demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("| floor: raw pixels |", "| floor: random-init CNN |", "| MSN (uniform prior) |", "| PMSN (power-law prior"):
        assert label in proc.stdout, label
    assert "chosen on a 10 % holdout of train, never on val" in proc.stdout
    # The reading compares each method with each floor in words, whichever way it went, and says one seed
    # cannot be read.
    assert proc.stdout.count(" floor by ") == 4 and "Prototype usage: sorted p̄" in proc.stdout
    assert "One seed: the PMSN − MSN difference has no spread" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    rows = {row["kind"]: row for row in results["rows"]}
    assert set(rows) == {"pixels", "random_init", "msn", "pmsn"}
    for row in rows.values():
        assert 30.0 < row["top1"] <= 100.0  # 10 balanced val classes: chance is 10 %
        assert row["selected_on"] == "train holdout"
        assert {"head", "medium", "tail"} <= set(row)
    assert rows["pmsn"]["prior"]["tau_prior"] > 0.2 and abs(rows["msn"]["prior"]["tau_prior"]) < 1e-6
    for method in ("msn", "pmsn"):
        run_dir = out / method / "seed0"
        for name in ("train_config.yaml", "training_curves.png", "prior_monitor.png", "class_histogram.json"):
            assert (run_dir / name).exists(), name
        histogram = json.loads((run_dir / "class_histogram.json").read_text())
        assert histogram["long_tail"]["class_order_rule"] == "random"
        assert (histogram["head_min"], histogram["tail_max"]) == (100, 20)  # the catalog's thresholds for digits
        assert (run_dir / "linear_eval" / "results.md").exists()

    # The README promises that a re-run of the demo prints the same table: a second run from scratch
    # (new out dir, so nothing is reused) gives bit-identical accuracies and prototype usage.
    again = run_demo(tmp_path / "again")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = {row["kind"]: row for row in json.loads((tmp_path / "again" / "results.json").read_text())["rows"]}
    measured = ("top1", "head", "medium", "tail", "lr", "weight_decay", "prior")
    assert {k: [rows[k].get(m) for m in measured] for k in rows} == {k: [rerun[k].get(m) for m in measured] for k in rerun}
