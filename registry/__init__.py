"""ssl_ext's stable plugin API: one registry per extension point.

Importing this package is cheap (no torch): plugins import what they need
themselves, and ssl_ext's built-in plugins are imported lazily the first time a
registry is asked for a name (``registry.discovery``).

Every registry follows detectron2's pattern::

    from registry import register_loss, build_loss

    @register_loss("my_loss")
    class MyLoss(ClassyLoss): ...

    loss = build_loss({"NAME": "my_loss", "PARAMS": {"temperature": 0.2}})

A *spec* given to ``build_*`` is a mapping with ``NAME`` and optional ``PARAMS``
(lower-case ``name``/``params`` are accepted too). The plugin is created with
``plugin.from_config(params)`` when it defines ``from_config``, else with
``plugin(**params)``; extra keyword arguments of ``build_*`` (the *context*, such
as the input width of a head) are passed along.
"""
from registry.contract import ContextArg, PluginContractError, Returns
from registry.core import Registry, build, spec_name_and_params
from registry.errors import DuplicateNameError, PluginParamsError, RegistryError, UnknownNameError
from registry.discovery import load_plugins, load_entry_point_plugins, ensure_builtin_plugins

# The randomness rule every kind that may draw random numbers inside a step follows (losses, trunks, heads).
RANDOMNESS_RULE = """
    Randomness (the resume contract): draw random numbers inside ``forward`` from torch's
    global generator (or ``ssl_ext.utils.rng.step_generator(purpose)``), never at build time
    for later use and never by reseeding it. The trainer reseeds the global generators at the
    start of every step from (seed, epoch, step, rank), so a resumed run draws exactly what the
    uninterrupted one did. State a plugin carries across steps (queues, centres, counters)
    lives in buffers or its ``state_dict`` so checkpoints hold it.
    """

LOSSES = Registry(
    "loss",
    """Loss functions (``ssl_ext/losses``).

    A loss subclasses Classy Vision's ``ClassyLoss`` (usually through
    ``ssl_ext.losses.base.SSLLoss``) and is also registered in Classy Vision's loss
    registry. ``forward(output, batch)`` receives the ``ssl_ext.engine.output.ModelOutput``
    of one step (student/teacher embeddings per view) and the batch dict, and returns a
    scalar tensor or a dict of named scalar terms whose ``"loss"`` entry is optimized
    (other entries are logged). The mathematics lives in documented functions on plain
    tensors (``ssl_ext/losses/functional.py``) that the module calls.
    """ + RANDOMNESS_RULE,
    returns=Returns("forward(output, batch) -> scalar tensor or dict with a 'loss' entry",
                    base="classy_vision.losses.ClassyLoss"),
)
HEADS = Registry(
    "head",
    """Heads stacked on a trunk (``ssl_ext/models/heads``).

    Maps ``(N, in_dim)`` features to ``(N, out_dim)``; the next head receives its
    ``out_dim`` as ``in_dim``.
    """ + RANDOMNESS_RULE,
    context=[("in_dim", "width of the features it receives (the trunk's or the previous head's out_dim)")],
    returns=Returns("maps (N, in_dim) to (N, out_dim)", base="torch.nn.Module", attributes=("out_dim",)),
)
TRUNKS = Registry(
    "trunk",
    """Feature extractors (``ssl_ext/models/trunks``).

    Takes images ``(N, C, H, W)`` and returns pooled features ``(N, out_dim)``;
    ``extract_layers(x, names)`` returns a dict of named intermediate features for
    evaluation.
    """ + RANDOMNESS_RULE,
    returns=Returns("maps images (N, C, H, W) to features (N, out_dim)", base="torch.nn.Module",
                    attributes=("out_dim", "extract_layers")),
)
SAMPLERS = Registry(
    "sampler",
    """Index samplers of the training loader (``ssl_ext/samplers``).

    Yields the dataset indices this rank loads, ``__len__`` of them per epoch, as a
    function of (seed, epoch) only. The resume contract, the one way a run continues
    mid-epoch: ``state_dict(batches_consumed)`` returns a small dict (ints/strings) with the
    epoch and the position after ``batches_consumed`` batches of this epoch (the trainer counts
    consumed batches itself, because loader workers prefetch ahead); the trainer saves it in
    every checkpoint, and on resume calls ``load_state_dict(state)`` and then
    ``set_epoch(saved epoch)``, after which ``__iter__`` continues at the saved position; a
    later ``set_epoch`` starts the next epoch from 0. ``ssl_ext.samplers.base.ResumableSampler``
    implements all of it for a subclass that only lays out an epoch's indices.
    """,
    context=[
        ("dataset", "the training dataset (items (views, label, index); exposes targets and num_classes)"),
        ("batch_size", "the batch size per replica"),
        ("rank", "this process's rank"),
        ("world_size", "the number of processes"),
        ("seed", "config.SEED_VALUE"),
        ("drop_last", "config.DATA.TRAIN.DROP_LAST: whether the loader drops an incomplete last batch"),
    ],
    returns=Returns("yields this rank's dataset indices", base="torch.utils.data.Sampler",
                    attributes=("__len__", "set_epoch", "state_dict", "load_state_dict")),
)
HOOKS = Registry(
    "hook",
    """Training-loop observers (``ssl_ext/hooks``).

    Classy Vision's ``ClassyHook`` events plus ``on_forward``/``on_backward``/``on_update``;
    each event receives the running ``ssl_ext.engine.trainer.Task``. Hooks return
    nothing; they may raise to stop the run.
    """,
    returns=Returns("observes the loop through named events", base="ssl_ext.hooks.base.SSLHook"),
)
DATA_SOURCES = Registry(
    "data source",
    """Datasets (``ssl_ext/data/sources``).

    A map-style dataset whose items are ``(image, label)`` with a PIL image or a
    ``(C, H, W)`` uint8/float tensor. Every source of a split receives that split's
    ``SOURCE_PARAMS``.
    """,
    context=[
        ("split", '"train" or "val"'),
        ("data_path", "config.DATA.<split>.DATA_PATHS entry ('' for the catalog's path); overrides the catalog"),
        ("dataset_name", "config.DATA.<split>.DATASET_NAMES entry: a name in the dataset catalog"),
        ("skip_corrupt", "config.DATA.SKIP_CORRUPT: skip unreadable images instead of stopping"),
    ],
    returns=Returns("items are (image, label); targets is the list of int labels", base="torch.utils.data.Dataset",
                    attributes=("__len__", "targets", "num_classes")),
)


def _callable(obj):
    return None if callable(obj) else f"the {type(obj).__qualname__} it returned is not callable"


TRANSFORMS = Registry(
    "transform",
    """Image transforms producing views (``ssl_ext/data/transforms``).

    Augmentation draws use torch's global generator, which the data loader seeds
    per item from (seed, epoch, index): a transform draws from it and never reseeds it.
    """,
    returns=Returns("a callable taking one image and returning a list of view tensors (C, h, w)", check=_callable),
)
PRIORS = Registry(
    "prior",
    """Cluster-size priors for PMSN (``ssl_ext/losses/priors``).

    ``ssl_ext.losses.priors.build_checked_prior`` also checks the values: positive,
    summing to 1, sorted in descending order.
    """,
    context=[("num_prototypes", "K, the number of prototypes of the loss using the prior")],
    returns=Returns("K cluster-size probabilities (a tensor, array or list of shape (K,))", attributes=("__len__",)),
)
OPTIMIZERS = Registry(
    "optimizer",
    """Optimizers (``ssl_ext/engine/optimizers``).

    Each parameter group carries its own ``weight_decay`` (the weight-decay policy is
    ``ssl_ext.engine.optimizers.param_groups``); ``lr`` is set by the schedule every step.
    """,
    context=[("params", "the parameter groups, a list of dicts with 'params' and 'weight_decay'")],
    returns=Returns("optimizes the given parameter groups", base="torch.optim.Optimizer"),
)


def _engine_result(obj):
    return None if isinstance(obj, dict) else f"it returned a {type(obj).__qualname__}, not a dict"


ENGINES = Registry(
    "engine",
    """Top-level jobs chosen by ``config.ENGINE_NAME`` (``ssl_ext/engine``, ``ssl_ext/benchmarks``).

    A function run once per process (after distributed set-up): building it with
    ``build_engine(name, cfg=cfg)`` runs the job.
    """,
    context=[("cfg", "the composed, validated config")],
    returns=Returns("a JSON-serializable dict of results", allow_none=True, check=_engine_result),
)

ALL_REGISTRIES = {
    r.kind: r for r in (LOSSES, HEADS, TRUNKS, SAMPLERS, HOOKS, DATA_SOURCES, TRANSFORMS, PRIORS, OPTIMIZERS, ENGINES)
}


def _also_register_with_classy_vision(name, cls):
    # Lets Classy Vision / VISSL trainers build our losses by name.
    from classy_vision.losses import LOSS_REGISTRY, register_loss as classy_register_loss

    taken_by = LOSS_REGISTRY.get(name)
    if taken_by is cls:
        return
    if taken_by is not None:
        # Another framework got there first (VISSL registers its own swav_loss and dino_loss): keep its
        # entry rather than fail `import ssl_ext`; ours stays in LOSSES (and VISSL's ssl_ext_loss adapter).
        import logging

        logging.getLogger(__name__).warning(
            "Classy Vision's loss registry already has %r (%s.%s); ssl_ext's %r is not registered there under that "
            "name. Build it with registry.build_loss, or in VISSL with ssl_ext_loss {NAME: %s}.",
            name, getattr(taken_by, "__module__", "?"), getattr(taken_by, "__qualname__", taken_by), name, name,
        )
        return
    classy_register_loss(name)(cls)


register_loss = LOSSES.decorator(after=_also_register_with_classy_vision)
register_head = HEADS.decorator()
register_trunk = TRUNKS.decorator()
register_sampler = SAMPLERS.decorator()
register_hook = HOOKS.decorator()
register_data_source = DATA_SOURCES.decorator()
register_transform = TRANSFORMS.decorator()
register_prior = PRIORS.decorator()
register_optimizer = OPTIMIZERS.decorator()
register_engine = ENGINES.decorator()

build_loss = LOSSES.build
build_head = HEADS.build
build_trunk = TRUNKS.build
build_sampler = SAMPLERS.build
build_hook = HOOKS.build
build_data_source = DATA_SOURCES.build
build_transform = TRANSFORMS.build
build_prior = PRIORS.build
build_optimizer = OPTIMIZERS.build
build_engine = ENGINES.build

__all__ = [
    "Registry", "ContextArg", "Returns", "PluginContractError", "RegistryError", "UnknownNameError", "DuplicateNameError", "PluginParamsError", "build", "spec_name_and_params",
    "load_plugins", "load_entry_point_plugins", "ensure_builtin_plugins", "ALL_REGISTRIES",
    "LOSSES", "HEADS", "TRUNKS", "SAMPLERS", "HOOKS", "DATA_SOURCES", "TRANSFORMS", "PRIORS", "OPTIMIZERS", "ENGINES",
    "register_loss", "register_head", "register_trunk", "register_sampler", "register_hook",
    "register_data_source", "register_transform", "register_prior", "register_optimizer", "register_engine",
    "build_loss", "build_head", "build_trunk", "build_sampler", "build_hook",
    "build_data_source", "build_transform", "build_prior", "build_optimizer", "build_engine",
]
