"""Runs VISSL's trainer through ssl_ext's launcher with one extra hook that records what VISSL did.

Used by test_vissl.py in a subprocess whose PYTHONPATH starts with the isolated VISSL install:

    python tests/integrations/vissl_driver.py RECORD config=ssl_ext_test/NAME [overrides...]

The recorder observes; every number it saves comes from VISSL's own task (the batch VISSL
fed, the model VISSL trained, the optimizer VISSL built, the teacher the EMA hook updated),
saved by every rank r to RECORD.rank<r>.
"""
import sys
from functools import partial

from ssl_ext.integrations.vissl.run_distributed_engines import hydra_main  # applies the shims first
from ssl_ext.integrations.vissl import SSLExtLoss, ssl_ext_hook_generator

import torch
from classy_vision.hooks.classy_hook import ClassyHook


def _small_parameters(module):
    """Every parameter of the heads (small enough to snapshot at each step)."""
    return {name: p.detach().clone() for name, p in module.named_parameters() if name.startswith("heads.")}


class RecorderHook(ClassyHook):
    on_phase_start = on_forward = on_backward = on_step = on_phase_end = ClassyHook._noop

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.record = {"steps": []}

    def on_start(self, task):
        loss = task.base_loss
        self.record["student_start"] = _small_parameters(task.base_model)
        if isinstance(loss, SSLExtLoss):
            self.record["loss_parameters_start"] = {k: v.detach().clone() for k, v in loss.trainable_parameters().items()}
            groups = task.optimizer.optimizer.param_groups
            self.record["loss_parameter_groups"] = {
                name: [i for i, g in enumerate(groups) if any(q is p for q in g["params"])]
                for name, p in loss.trainable_parameters().items()
            }
            self.record["model_parameter_names"] = [name for name, _ in task.base_model.named_parameters()]
            self.record["masking_enabled"] = {
                "student": getattr(task.base_model.trunk, "masking_enabled", None),
                "teacher": getattr(loss.teacher.trunk, "masking_enabled", None) if loss.teacher is not None else None,
            }

    def on_loss_and_meter(self, task):
        sample = task.last_batch.sample
        data_idx = sample["data_idx"][0] if isinstance(sample["data_idx"], list) else sample["data_idx"]
        self.record["steps"].append({
            "iteration": int(task.iteration),
            "loss": float(task.last_batch.loss),
            "target": sample["target"].detach().cpu().clone(),
            "data_idx": data_idx.detach().cpu().clone(),
        })

    def on_update(self, task):
        step = self.record["steps"][-1]
        loss = task.base_loss
        step["student"] = _small_parameters(task.base_model)
        step["weight_decay_by_group"] = [float(g["weight_decay"]) for g in task.optimizer.optimizer.param_groups]
        if isinstance(loss, SSLExtLoss):
            step["terms"] = dict(loss.last_terms)
            if loss.teacher is not None:
                step["teacher"] = _small_parameters(loss.teacher)
            step["loss_parameters"] = {k: v.detach().clone() for k, v in loss.trainable_parameters().items()}

    def on_end(self, task):
        self.record["max_iteration"] = int(task.max_iteration)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        torch.save(self.record, f"{self.path}.rank{rank}")


def hooks_with_recorder(cfg, path):
    return ssl_ext_hook_generator(cfg) + [RecorderHook(path)]


if __name__ == "__main__":
    hydra_main(sys.argv[2:], hook_generator=partial(hooks_with_recorder, path=sys.argv[1]))
