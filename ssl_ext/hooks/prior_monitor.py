"""Watches MSN/PMSN prototype usage p̄ against the cluster prior π.

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning",
ICLR 2023, arXiv:2210.07277: the point of PMSN is that the sorted prototype usage
follows the prior (uniform for MSN, a power law for PMSN); this hook shows whether
it does.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any, List, Optional, Tuple

import numpy as np

from registry import register_hook
from ssl_ext.analysis.prototype_usage import find_prototype_loss, usage_statistics
from ssl_ext.hooks.base import SSLHook


def global_anchor_count(task: Any) -> Optional[int]:
    """Rows of the last step's student outputs over all ranks: the samples p̄ averaged (None if unknown)."""
    output = getattr(task, "last_output", None)
    student = getattr(output, "student", None)
    if not student:
        return None
    return int(sum(int(view.shape[0]) for view in student)) * int(getattr(task, "world_size", 1))


@register_hook("prior_monitor")
class PriorMonitorHook(SSLHook):
    """Logs prototype usage against the prior and plots it at the end of the run.

    Every ``frequency`` optimizer updates (and after the first one) it sends to
    ``task.log_metrics`` (metrics.jsonl, TensorBoard) the statistics of
    :func:`ssl_ext.analysis.prototype_usage.usage_statistics`: ``prior/kl_sorted``,
    ``prior/entropy`` (of p̄), ``prior/perplexity``, ``prior/prototypes_in_use``,
    ``prior/max_mass``, ``prior/tau_mle`` (power-law exponent of sorted p̄, the estimator
    the offline cluster analysis uses), ``prior/tau_mle_uniform_floor`` (what uniform
    clusters of the same batch size give) and ``prior/prior_tau_mle``. At the end, rank 0
    writes ``plot_name`` (sorted p̄ of up to ``max_curves`` logged steps and π, on log-log
    axes) and a JSON file next to it: the final sorted p̄, π and statistics at the top
    level, and under ``history`` every kept snapshot (iteration, sorted p̄, statistics).

    Requires a loss with prototypes (``msn_loss``, ``pmsn_loss``, or ``msbreg_loss``
    with one of them as base); add it with
    ``HOOKS.EXTRA: [{NAME: prior_monitor, PARAMS: {frequency: 50}}]``.
    """

    def __init__(
        self,
        frequency: int = 50,
        usage_threshold: float = 0.1,
        plot_name: str = "prior_monitor.png",
        max_curves: int = 8,
    ) -> None:
        super().__init__()
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"prior_monitor: frequency must be an integer >= 1 (optimizer updates), got {frequency!r}")
        if isinstance(usage_threshold, bool) or not isinstance(usage_threshold, (int, float)) or not usage_threshold > 0:
            raise ValueError(f"prior_monitor: usage_threshold must be a number > 0, got {usage_threshold!r}")
        if not isinstance(plot_name, str) or not plot_name.endswith(".png") or os.sep in plot_name:
            raise ValueError(f"prior_monitor: plot_name must be a file name ending in .png, got {plot_name!r}")
        if isinstance(max_curves, bool) or not isinstance(max_curves, int) or max_curves < 1:
            raise ValueError(f"prior_monitor: max_curves must be an integer >= 1, got {max_curves!r}")
        self.frequency = frequency
        self.usage_threshold = float(usage_threshold)
        self.plot_name = plot_name
        self.max_curves = max_curves
        self.snapshots: List[Tuple[int, List[float]]] = []
        self.num_samples: Optional[int] = None  # anchors p̄ averaged over (for the uniform floor)
        self.last_logged_iteration: Optional[int] = None

    # ---------------------------------------------------------------- events
    def on_start(self, task) -> None:
        if find_prototype_loss(task.loss) is None:
            raise ValueError(
                f"prior_monitor needs a loss with prototypes and a prior (msn_loss, pmsn_loss, or msbreg_loss with "
                f"such a base), but config.LOSS is {type(task.loss).__name__}; remove prior_monitor from "
                f"config.HOOKS.EXTRA or change config.LOSS.NAME"
            )

    def on_update(self, task) -> None:
        if task.iteration == 1 or task.iteration % self.frequency == 0:
            self.record(task)

    def on_end(self, task) -> None:
        self.record(task)
        if task.rank == 0 and self.snapshots:
            self.write_outputs(task)

    # --------------------------------------------------------------- helpers
    def record(self, task) -> None:
        if task.iteration == self.last_logged_iteration:
            return
        module = find_prototype_loss(task.loss)
        if module is None or module.last_mean_probs is None:
            return
        mean_probs = module.last_mean_probs.detach().double().cpu().numpy()
        prior = module.prior.detach().double().cpu().numpy()
        self.num_samples = global_anchor_count(task) or self.num_samples
        task.log_metrics(usage_statistics(mean_probs, prior, self.usage_threshold, self.num_samples))
        self.snapshots.append((int(task.iteration), np.sort(mean_probs)[::-1].tolist()))
        if len(self.snapshots) > 2 * self.max_curves:  # bounded memory and checkpoint size on long runs
            self.snapshots = self.snapshots[:-1:2] + self.snapshots[-1:]
        self.last_logged_iteration = task.iteration

    def curves_to_plot(self) -> List[Tuple[int, List[float]]]:
        """Up to ``max_curves`` snapshots, evenly spread over the run, always including the last."""
        if len(self.snapshots) <= self.max_curves:
            return list(self.snapshots)
        picks = np.linspace(0, len(self.snapshots) - 1, self.max_curves).round().astype(int)
        return [self.snapshots[i] for i in sorted(set(picks.tolist()))]

    def write_outputs(self, task) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ssl_ext.utils.io import atomic_write_bytes, atomic_write_text

        prior = find_prototype_loss(task.loss).prior.detach().double().cpu().numpy()
        ranks = np.arange(1, prior.size + 1)
        curves = self.curves_to_plot()
        fig, ax = plt.subplots(figsize=(6, 4.5))
        colors = plt.cm.viridis(np.linspace(0.15, 0.85, len(curves)))
        for (iteration, sorted_probs), color in zip(curves, colors):
            is_last = iteration == curves[-1][0]
            values = np.asarray(sorted_probs)
            shown = values > 0  # log axes cannot show unused prototypes
            ax.plot(ranks[shown], values[shown], color="C3" if is_last else color, lw=2 if is_last else 1,
                    alpha=1 if is_last else 0.6, label=f"sorted p̄, iteration {iteration}")
        ax.plot(ranks, prior, "k--", lw=1.5, label="prior π")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("prototype rank k")
        ax.set_ylabel("mass")
        ax.set_title("Prototype usage vs prior")
        ax.legend(fontsize=7)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(os.path.join(task.run_dir, self.plot_name), buffer.getvalue())
        history = [
            {"iteration": iteration, "sorted_mean_probs": probs,
             **usage_statistics(np.asarray(probs), prior, self.usage_threshold, self.num_samples)}
            for iteration, probs in self.snapshots
        ]
        summary = {**history[-1], "prior": prior.tolist(), "num_samples": self.num_samples, "history": history}
        json_name = os.path.splitext(self.plot_name)[0] + ".json"
        atomic_write_text(os.path.join(task.run_dir, json_name), json.dumps(summary))

    # ------------------------------------------------------------- resumption
    def state_dict(self) -> dict:
        return {"snapshots": [[it, probs] for it, probs in self.snapshots], "num_samples": self.num_samples}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = [(int(it), list(probs)) for it, probs in state.get("snapshots", [])]
        self.num_samples = state.get("num_samples", self.num_samples)
