"""``ssl_ext_task``: VISSL's self-supervision task, with what ssl_ext's losses and samplers need.

Selected with ``config.TRAINER.TASK_NAME: ssl_ext_task`` (VISSL's own extension point,
Classy Vision's task registry). It differs from ``self_supervision_task`` in three places:

* **Loss-owned parameters are trained.** VISSL builds its optimizer from the model
  before it builds the loss, so a loss's parameters (MSN/PMSN prototypes) would get
  gradients and never be updated. Here the loss is built together with the model and its
  parameters are registered, as the same ``nn.Parameter`` objects, in a submodule
  ``ssl_ext_loss_parameters`` of the model. The model's DistributedDataParallel then
  broadcasts their initial value and averages their gradients, and the optimizer gets
  them in a group of their own without weight decay (as MSN and DINO train prototypes).
* **The EMA teacher** (when ``EMA_TEACHER.ENABLED``) is a frozen copy of the model made
  before those parameters are attached (MSN's target network shares the student's
  prototypes, it does not copy them) and is stored in the loss for checkpointing.
* **ssl_ext samplers** are selectable per split with
  ``config.DATA.TRAIN.SSL_EXT_SAMPLER: {NAME: class_imbalanced, PARAMS: {...}}``; any
  name of ssl_ext's sampler registry works. Class-aware samplers read the labels of VISSL's
  dataset (``LABEL_SOURCES``), after ``DATA_LIMIT`` subsetting.
"""
from __future__ import annotations

import copy
import logging
from functools import partial
from typing import Any, Dict, Iterator, Mapping

import numpy as np
import torch
from classy_vision.tasks import register_task
from torch import nn
from torch.utils.data import Sampler
from vissl.data import build_dataloader, get_sampler as vissl_get_sampler
from vissl.optimizers import get_optimizer_param_groups
from vissl.trainer.train_task import SelfSupervisionTask

from registry import build_sampler
from ssl_ext.integrations.vissl.loss import LOSS_NAME, SSLExtLoss
from ssl_ext.integrations.vissl.trunk import disable_masking

TASK_NAME = "ssl_ext_task"
LOSS_PARAMETERS_MODULE = "ssl_ext_loss_parameters"
SAMPLER_KEY = "SSL_EXT_SAMPLER"

logger = logging.getLogger(__name__)


class LossParameters(nn.Module):
    """Registers a loss's trainable parameters (the same objects) under the model."""

    def __init__(self, parameters: Mapping[str, nn.Parameter]) -> None:
        super().__init__()
        for name, parameter in parameters.items():
            self.register_parameter(name.replace(".", "__"), parameter)


class VisslDatasetLabels:
    """The class labels of a VISSL ``GenericSSLDataset`` as the ``targets`` a class-aware ssl_ext sampler reads."""

    def __init__(self, dataset: Any, split: str) -> None:
        if not getattr(dataset, "labels_init", True):
            dataset.load_labels()
        if not getattr(dataset, "label_objs", None):
            raise ValueError(
                f"config.DATA.{split.upper()}.{SAMPLER_KEY} needs class labels, but the dataset has none: set "
                f"config.DATA.{split.upper()}.LABEL_SOURCES (and LABEL_PATHS for disk_filelist) with LABEL_TYPE: standard."
            )
        labels = np.asarray(dataset.label_objs[0])
        if dataset.data_limit >= 0:
            if dataset._can_random_subset_data_sources():  # the dataset maps index i to subset[i]
                if not dataset._subset_initialized:
                    dataset._init_image_and_label_subset()
                labels = labels[np.asarray(dataset.image_and_label_subset)]
            else:
                labels = labels[: len(dataset)]
        self.targets = labels.astype(np.int64).reshape(-1)

    def __len__(self) -> int:
        return int(self.targets.size)


class VisslSampler(Sampler):
    """An ssl_ext sampler behind the attributes and calls of VISSL's data loop.

    VISSL calls ``set_epoch(phase)`` at every phase and ``set_start_iter(i)`` after a
    resume; the latter becomes the sampler's own mid-epoch resume position.
    """

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.shuffle = True
        self.start_iter = 0

    num_replicas = property(lambda self: self.sampler.world_size)
    rank = property(lambda self: self.sampler.rank)
    epoch = property(lambda self: self.sampler.epoch)
    seed = property(lambda self: self.sampler.seed)
    batch_size = property(lambda self: self.sampler.batch_size)
    num_samples = property(lambda self: len(self.sampler))
    total_size = property(lambda self: len(self.sampler) * self.sampler.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def set_start_iter(self, start_iter: int) -> None:
        self.start_iter = int(start_iter)
        if self.start_iter > 0:
            self.sampler.load_state_dict({
                "epoch": self.sampler.epoch, "num_yielded": self.start_iter * self.sampler.batch_size,
                "seed": self.sampler.seed,
            })

    def state_dict(self) -> Dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    def __iter__(self) -> Iterator[int]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def ssl_ext_get_sampler(dataset: Any, dataset_config: Mapping[str, Any], sampler_seed: int = 0, split: str = "train"):
    """VISSL's ``get_sampler`` signature; an ssl_ext sampler when ``SSL_EXT_SAMPLER`` is set, else VISSL's."""
    spec = dataset_config.get(SAMPLER_KEY) if hasattr(dataset_config, "get") else None
    if not spec or not spec.get("NAME"):
        return vissl_get_sampler(dataset, dataset_config, sampler_seed)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    world_size = torch.distributed.get_world_size() if distributed else 1
    sampler = build_sampler(
        {"NAME": spec["NAME"], "PARAMS": dict(spec.get("PARAMS") or {})},
        dataset=VisslDatasetLabels(dataset, split), batch_size=int(dataset_config["BATCHSIZE_PER_REPLICA"]),
        rank=rank, world_size=world_size, seed=int(sampler_seed), drop_last=bool(dataset_config["DROP_LAST"]),
    )
    logger.info("ssl_ext sampler %s for split %s: %d indices per rank and epoch", spec["NAME"], split, len(sampler))
    return VisslSampler(sampler)


def make_vissl_teacher(model: nn.Module, student_only_heads: int = 0) -> nn.Module:
    """A frozen copy of VISSL's model without its last ``student_only_heads`` heads (e.g. BYOL's predictor),
    with masking off in its ``ssl_ext_trunk`` (MSN's target network sees whole crops).

    Made before the loss's parameters are attached to the model: MSN's target network uses
    the student's prototypes, it does not keep a copy of them. Its weights are set from the
    student by ``EMATeacherHook.on_start`` (after DDP's broadcast) or by the checkpoint.
    """
    teacher = copy.deepcopy(model)
    if student_only_heads:
        if student_only_heads >= len(teacher.heads):
            raise ValueError(
                f"config.LOSS.{LOSS_NAME}.STUDENT_ONLY_HEADS={student_only_heads} but config.MODEL.HEAD.PARAMS has "
                f"{len(teacher.heads)} heads; the teacher needs at least one."
            )
        teacher.heads = nn.ModuleList(list(teacher.heads)[:-student_only_heads])
    disable_masking(teacher)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@register_task(TASK_NAME)
class SSLExtTask(SelfSupervisionTask):
    """VISSL's ``self_supervision_task`` that trains ssl_ext losses' parameters and uses ssl_ext samplers."""

    def _build_model(self):
        model = super()._build_model()
        self._ssl_ext_built_loss = None
        if self.config.LOSS["name"] != LOSS_NAME:
            return model  # VISSL's own losses are built where VISSL builds them (some need the datasets)
        loss = super()._build_loss()
        if loss.ema_enabled:
            loss.teacher = make_vissl_teacher(model, loss.student_only_heads)
        parameters = loss.trainable_parameters()
        if parameters:
            model.add_module(LOSS_PARAMETERS_MODULE, LossParameters(parameters))
        self._ssl_ext_built_loss = loss
        return model

    def _build_loss(self):
        loss = getattr(self, "_ssl_ext_built_loss", None)
        return loss if loss is not None else super()._build_loss()

    def prepare_optimizer(self):
        param_groups = get_optimizer_param_groups(
            model=self.base_model, model_config=self.config["MODEL"],
            optimizer_config=self.config["OPTIMIZER"], optimizer_schedulers=self.optimizer_schedulers,
        )
        loss = getattr(self, "_ssl_ext_built_loss", None)
        loss_parameters = list(loss.trainable_parameters().values()) if isinstance(loss, SSLExtLoss) else []
        if loss_parameters:
            owned = {id(p) for p in loss_parameters}
            for group in param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in owned]
            param_groups.append({"params": loss_parameters, "lr": self.optimizer_schedulers["lr"], "weight_decay": 0.0})
            logger.info("%s: %d parameters of the loss trained without weight decay", LOSS_NAME, len(loss_parameters))
        self.optimizer.set_param_groups(param_groups)

    def build_dataloaders(self, pin_memory: bool, current_train_phase_idx: int = 0):
        return {
            split.lower(): build_dataloader(
                dataset=self.datasets[split.lower()], dataset_config=self.config["DATA"][split],
                num_dataloader_workers=self.config.DATA.NUM_DATALOADER_WORKERS, pin_memory=pin_memory,
                multi_processing_method=self.config.MULTI_PROCESSING_METHOD, device=self.device,
                sampler_seed=self.config["SEED_VALUE"], split=split.lower(),
                get_sampler=partial(ssl_ext_get_sampler, split=split.lower()),
            )
            for split in self.available_splits
        }
