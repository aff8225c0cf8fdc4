"""metrics_jsonl: one JSON record per logged step; a resume drops the records newer than its checkpoint."""
import json
from types import SimpleNamespace

from registry import build_hook


def test_every_logged_step_is_one_record(tiny_run):
    # 8 updates logged every 3rd, and the last one: 3, 6, 8.
    assert [r["iteration"] for r in tiny_run.records if "loss" in r] == [3, 6, 8]
    assert all(r["epoch"] == 0 for r in tiny_run.records if "loss" in r)


def test_a_resume_keeps_only_the_records_up_to_its_checkpoint(tmp_path):
    hook = build_hook("metrics_jsonl")
    task = SimpleNamespace(run_dir=str(tmp_path), rank=0, resumed_from=None, iteration=0)
    for iteration in (2, 4, 6):
        hook.write_metrics(task, {"iteration": iteration, "loss": float(iteration)})
    resumed = SimpleNamespace(run_dir=str(tmp_path), rank=0, resumed_from="checkpoint_iter4.torch", iteration=4)
    hook.on_start(resumed)
    hook.write_metrics(resumed, {"iteration": 6, "loss": 0.5})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"iteration": 2, "loss": 2.0}, {"iteration": 4, "loss": 4.0}, {"iteration": 6, "loss": 0.5}]


def test_only_rank_0_writes(tmp_path):
    hook = build_hook("metrics_jsonl")
    hook.write_metrics(SimpleNamespace(run_dir=str(tmp_path), rank=1), {"iteration": 1})
    assert not (tmp_path / "metrics.jsonl").exists()
