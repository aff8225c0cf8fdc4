"""plot_curves: training_curves.png from metrics.jsonl at the end; nothing without records."""
from types import SimpleNamespace

from registry import build_hook


def test_the_run_ends_with_a_png_of_its_curves(tiny_run):
    assert (tiny_run.run_dir / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_metrics_no_plot(tmp_path):
    hook = build_hook("plot_curves")
    hook.on_end(SimpleNamespace(run_dir=str(tmp_path), rank=0))
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1, "lr": 0.1}\n')  # no loss record
    hook.on_end(SimpleNamespace(run_dir=str(tmp_path), rank=0))
    assert not (tmp_path / "training_curves.png").exists()
