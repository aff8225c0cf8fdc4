"""Shared machinery of ssl_ext's samplers: global-batch layout, determinism, resume.

Every sampler here builds, for one epoch, the *global* index sequence of all
ranks from ``(seed, epoch)`` alone, then hands rank ``r`` its share. Global batch
``i`` is ``batch_size * world_size`` consecutive draws; rank ``r``'s ``i``-th
chunk of ``batch_size`` indices is its share of global batch ``i``. So a
``DataLoader(batch_size=batch_size, drop_last=...)`` on every rank sees, at step
``i``, exactly the pieces of one global batch, and any per-batch property (such as
"K distinct classes") holds for the global batch the loss sees.

The seed must be the same on every rank (pass the base seed, not a rank-offset
one): ranks agree on the global sequence and take disjoint parts of it.

Resume contract (exact mid-epoch)
---------------------------------
``state_dict()`` returns ``{"epoch": e, "num_yielded": n, "seed": s}`` where ``n``
counts indices this rank's iterator has handed out in epoch ``e``. After
``load_state_dict(state)``, the next ``__iter__`` regenerates epoch ``e``'s sequence
and continues at position ``n``; later epochs start from 0 again. ``set_epoch(e)``
with the loaded epoch keeps the pending position, so the usual loop
``sampler.set_epoch(epoch); for batch in loader: ...`` resumes correctly.

A ``DataLoader`` with workers pulls indices ahead of the batches the training
loop has consumed, so ``num_yielded`` may run ahead of the truth. The trainer
therefore calls ``state_dict(batches_consumed=...)`` with the batches it counted
itself, saves that in every checkpoint, and on resume calls ``load_state_dict``
(the one resume mechanism; nothing skips indices from outside).

``len(sampler)`` is the number of indices this rank yields in a full epoch, also
in a resumed epoch (the remaining count is ``len(sampler) - num_yielded``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler


def dataset_targets(dataset: Any) -> np.ndarray:
    """The integer class labels of ``dataset`` (its ``targets``), as an int64 array."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ValueError(
            f"A class-aware sampler needs labels, but dataset {type(dataset).__name__} has no `targets` attribute. "
            "Use a labelled data source (every ssl_ext data source exposes `targets`)."
        )
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 1:
        raise ValueError(f"dataset.targets must be a flat list of int labels, got an array of shape {targets.shape}.")
    if targets.size and targets.min() < 0:
        raise ValueError(f"dataset.targets has a negative label {int(targets.min())}; labels must be 0..C-1.")
    return targets


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator of one (seed, epoch, stream): independent streams, identical on every rank."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(stream)]))


def systematic_round(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer counts with ``E[count_c] = expected_c``, each ``floor`` or ``ceil`` of it, summing to ``round(sum)``.

    The integer parts are kept; the fractional parts are resolved by systematic
    sampling over a random order of the entries (one uniform offset ``u``, entry ``c``
    gets one more when ``floor(F_c + u) > floor(F_{c-1} + u)`` with ``F`` the running
    sum of fractions). An entry with no fractional part never gets one more, so a
    count never exceeds ``ceil(expected_c)`` even with float round-off.
    """
    expected = np.asarray(expected, dtype=np.float64)
    whole = np.floor(expected)
    fractions = expected - whole
    order = rng.permutation(expected.size)
    cumulative = np.concatenate([[0.0], np.cumsum(fractions[order])])
    nearest = np.round(cumulative[-1])
    if abs(cumulative[-1] - nearest) < 1e-6:  # keep an integral total integral despite round-off
        cumulative[-1] = nearest
    extra = np.empty(expected.size, dtype=np.int64)
    extra[order] = np.diff(np.floor(cumulative + rng.random())).astype(np.int64)
    return whole.astype(np.int64) + extra


class ClassIndex:
    """Dataset indices grouped by class, for vectorized per-class draws."""

    def __init__(self, targets: np.ndarray, num_classes: Optional[int] = None) -> None:
        self.targets = targets
        # A label above the declared class count still gets its own slot rather than being dropped.
        self.num_classes = max(int(num_classes or 0), int(targets.max()) + 1 if targets.size else 0)
        self.sorted_indices = np.argsort(targets, kind="stable")
        self.counts = np.bincount(targets, minlength=self.num_classes).astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def draw(self, classes: np.ndarray, amounts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``amounts[j]`` indices of class ``classes[j]`` for every j, concatenated in that order.

        Each class is walked through a fresh random permutation of its images; when
        more images are asked for than the class has, the walk cycles through the
        permutation again, so every image repeats as evenly as possible. All
        requests for one class (``classes`` may repeat) share one walk, so images are
        distinct across requests until the class is exhausted.
        """
        classes = np.asarray(classes, dtype=np.int64)
        amounts = np.asarray(amounts, dtype=np.int64)
        if np.any(self.counts[classes[amounts > 0]] == 0):
            empty = int(classes[(amounts > 0) & (self.counts[classes] == 0)][0])
            raise ValueError(f"Asked to draw images of class {empty}, which has no images in the dataset.")
        # Random permutation inside each class block: sorting label + U[0, 1) keeps the blocks and shuffles within.
        keys = self.targets[self.sorted_indices] + rng.random(self.sorted_indices.size)
        shuffled = self.sorted_indices[np.argsort(keys)]
        # Offset of each request inside its class's walk = amounts requested earlier for the same class.
        total = int(amounts.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        order = np.argsort(classes, kind="stable")
        sorted_amounts = amounts[order]
        sorted_classes = classes[order]
        ends = np.cumsum(sorted_amounts)
        class_first = np.searchsorted(sorted_classes, sorted_classes, side="left")
        ends_before_class = np.where(class_first > 0, ends[class_first - 1], 0)
        offsets_sorted = ends - sorted_amounts - ends_before_class
        offsets = np.empty_like(offsets_sorted)
        offsets[order] = offsets_sorted
        # Expand every request into its positions (no per-sample Python loop).
        request_of_position = np.repeat(np.arange(classes.size), amounts)
        position_in_request = np.arange(total) - np.repeat(np.cumsum(amounts) - amounts, amounts)
        cls = classes[request_of_position]
        step = (offsets[request_of_position] + position_in_request) % self.counts[cls]
        return shuffled[self.starts[cls] + step]


class ResumableSampler(Sampler[int]):
    """Base class: subclasses implement ``_global_sequence(epoch)``.

    ``_global_sequence`` returns the epoch's indices of all ranks in global-batch
    order, with a length that is a multiple of ``world_size`` (see
    ``rank_share``). The base class validates the common arguments and implements
    ``set_epoch``, ``__iter__``, ``__len__`` and the resume state.
    """

    def __init__(self, dataset: Any, batch_size: int, rank: int, world_size: int, seed: int, drop_last: bool = True) -> None:
        for name, value in (("batch_size", batch_size), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}.")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"{type(self).__name__}: rank must be an int in [0, world_size={world_size}), got {rank!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{type(self).__name__}: seed must be an int, got {seed!r}.")
        if not isinstance(drop_last, bool):
            raise ValueError(f"{type(self).__name__}: drop_last must be true or false, got {drop_last!r}.")
        self.dataset = dataset
        self.dataset_size = len(dataset)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.num_yielded = 0
        self._resume_position: Optional[int] = None

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    # ------------------------------------------------------------------ layout
    def _global_sequence(self, epoch: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _global_length(self) -> int:  # pragma: no cover - abstract
        """Length of ``_global_sequence`` (without generating it)."""
        raise NotImplementedError

    def rank_share(self, sequence: np.ndarray, rank: Optional[int] = None) -> np.ndarray:
        """Rank ``rank``'s indices: its ``batch_size`` chunk of every full global batch, then its part of the rest."""
        rank = self.rank if rank is None else rank
        global_batch = self.global_batch_size
        full = (sequence.size // global_batch) * global_batch
        batches = sequence[:full].reshape(-1, self.world_size, self.batch_size)[:, rank, :].reshape(-1)
        tail = sequence[full:]
        per_rank = tail.size // self.world_size
        return np.concatenate([batches, tail[rank * per_rank : (rank + 1) * per_rank]])

    def epoch_indices(self, epoch: Optional[int] = None) -> np.ndarray:
        """This rank's whole index sequence of ``epoch`` (default: the current one)."""
        return self.rank_share(self._global_sequence(self.epoch if epoch is None else epoch))

    # ------------------------------------------------------------- torch API
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._resume_position = None
            self.num_yielded = 0
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._global_length() // self.world_size

    def __iter__(self) -> Iterator[int]:
        # Not a generator function: the position resets when iteration starts, not at the first index.
        start = self._resume_position or 0
        self._resume_position = None
        self.num_yielded = start
        return self._counting(self.epoch_indices()[start:].tolist())

    def _counting(self, indices: List[int]) -> Iterator[int]:
        for index in indices:
            self.num_yielded += 1
            yield index

    # ---------------------------------------------------------------- resume
    def state_dict(self, batches_consumed: Optional[int] = None) -> Dict[str, Any]:
        """Epoch and position of this rank's iterator (see the module docstring)."""
        position = self.num_yielded if batches_consumed is None else int(batches_consumed) * self.batch_size
        return {"epoch": self.epoch, "num_yielded": position, "seed": self.seed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        missing = [k for k in ("epoch", "num_yielded") if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state {state!r} lacks {missing}.")
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the checkpoint's sampler seed {state['seed']} differs from "
                f"this run's seed {self.seed}; resuming would replay different batches. Use the original seed."
            )
        position = int(state["num_yielded"])
        if not 0 <= position <= len(self):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: num_yielded={position} is outside [0, {len(self)}] "
                "(the sampler's epoch length); was the checkpoint made with another batch size or world size?"
            )
        self.epoch = int(state["epoch"])
        self.num_yielded = position
        self._resume_position = position


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}.")


def check_positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}.")


__all__: List[str] = [
    "ResumableSampler", "ClassIndex", "dataset_targets", "epoch_rng", "systematic_round", "check_choice", "check_positive_int",
]
