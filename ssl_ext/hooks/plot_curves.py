import json
import os

from registry import register_hook
from ssl_ext.hooks.base import SSLHook
from ssl_ext.utils.io import path_manager, read_text

CURVES = ("loss", "lr")


@register_hook("plot_curves")
class PlotCurvesHook(SSLHook):
    """Plots the loss terms and the learning rate from metrics.jsonl into ``training_curves.png`` at the end."""

    def on_end(self, task) -> None:
        path = os.path.join(task.run_dir, "metrics.jsonl")
        if task.rank != 0 or not path_manager.exists(path):
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
        records = [r for r in records if "loss" in r]
        if not records:
            return
        terms = sorted({k for r in records for k in r if k not in ("iteration", "epoch", "lr", "weight_decay", "images_per_sec", "eta_sec", "ema_momentum")})
        fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
        for term in terms:
            points = [(r["iteration"], r[term]) for r in records if term in r]
            ax_loss.plot(*zip(*points), label=term)
        ax_loss.set_xlabel("iteration")
        ax_loss.set_title("loss terms")
        ax_loss.legend(fontsize=8)
        ax_lr.plot([r["iteration"] for r in records], [r["lr"] for r in records])
        ax_lr.set_xlabel("iteration")
        ax_lr.set_title("learning rate")
        fig.tight_layout()
        fig.savefig(os.path.join(task.run_dir, "training_curves.png"), dpi=100)
        plt.close(fig)
