import json
import logging
import os
import warnings

import torch

from registry import register_hook
from ssl_ext.hooks.base import SSLHook
from ssl_ext.utils.io import atomic_write_text

logger = logging.getLogger(__name__)


@register_hook("model_complexity")
class ModelComplexityHook(SSLHook):
    """Counts parameters and the FLOPs of one image through trunk and heads (fvcore), once at start,
    at the resolution of the first view; writes ``model_complexity.json``."""

    def on_start(self, task) -> None:
        if task.rank != 0 or task.resumed_from is not None:
            return
        from fvcore.nn import FlopCountAnalysis

        views, _, _ = task.train_loader.dataset[0]
        x = views[0].unsqueeze(0).to(task.device)
        model = task.student
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                analysis = FlopCountAnalysis(_SingleView(model), x)
                analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                flops = int(analysis.total())
        except Exception as exc:  # tracing can fail for exotic trunks; the count is informational
            logger.warning("FLOP count failed for %s: %s", type(model.trunk).__name__, exc)
            flops = -1
        finally:
            model.train(was_training)
        info = {
            "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "flops_per_image": flops,
            "input_shape": list(x.shape[1:]),
        }
        atomic_write_text(os.path.join(task.run_dir, "model_complexity.json"), json.dumps(info, indent=2))
        logger.info("Model: %.3fM parameters, %.2f MFLOPs per image at %s", info["params"] / 1e6, flops / 1e6, info["input_shape"])


class _SingleView(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model([x])[0]
