"""tensorboard: every numeric logged scalar, at its iteration, readable by TensorBoard itself."""
import pytest


def test_scalars_match_metrics_jsonl(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run.run_dir / "tensorboard"))
    events.Reload()
    logged = [r for r in tiny_run.records if "loss" in r]
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == [r["iteration"] for r in logged]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert "lr" in events.Tags()["scalars"] and "iteration" not in events.Tags()["scalars"]
