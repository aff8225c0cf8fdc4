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
from registry.core import Registry, build, spec_name_and_params
from registry.errors import DuplicateNameError, PluginParamsError, RegistryError, UnknownNameError
from registry.discovery import load_plugins, load_entry_point_plugins, ensure_builtin_plugins

LOSSES = Registry(
    "loss",
    """Loss functions (``ssl_ext/losses``).

    A loss subclasses Classy Vision's ``ClassyLoss`` and is also registered in
    Classy Vision's loss registry. ``forward(output, batch)`` receives the
    ``ssl_ext.engine.step.ModelOutput`` of one step (student/teacher embeddings
    per view) and the batch dict, and returns a scalar tensor or a dict of named
    scalar terms whose ``"loss"`` entry is optimized (other entries are logged).
    """,
)
HEADS = Registry(
    "head",
    """Heads stacked on a trunk (``ssl_ext/models/heads``).

    Built with ``build_head(spec, in_dim=<width of the previous stage>)``; an
    ``nn.Module`` mapping ``(N, in_dim)`` to ``(N, out_dim)`` that exposes
    ``out_dim``.
    """,
)
TRUNKS = Registry(
    "trunk",
    """Feature extractors (``ssl_ext/models/trunks``).

    An ``nn.Module`` taking images ``(N, C, H, W)`` and returning pooled features
    ``(N, out_dim)``; it exposes ``out_dim`` and ``extract_layers(x, names)``
    returning a dict of named intermediate features for evaluation.
    """,
)
SAMPLERS = Registry(
    "sampler",
    """Batch/index samplers (``ssl_ext/samplers``).

    Built with ``build_sampler(spec, dataset=..., batch_size=<per replica>,
    rank=..., world_size=..., seed=...)``; a ``torch.utils.data.Sampler`` over
    dataset indices with ``set_epoch(epoch)``, ``state_dict()``,
    ``load_state_dict(state)`` (for exact mid-epoch resume) and a correct
    ``__len__`` (number of indices this rank yields per epoch).
    """,
)
HOOKS = Registry(
    "hook",
    """Training-loop observers (``ssl_ext/hooks``).

    A subclass of ``ssl_ext.hooks.base.SSLHook`` (Classy Vision's ``ClassyHook``
    plus ``on_forward``/``on_backward``/``on_update``); each event receives the
    running ``Task``. Hooks return nothing; they may raise to stop the run.
    """,
)
DATA_SOURCES = Registry(
    "data source",
    """Datasets (``ssl_ext/data/sources``).

    Built with ``build_data_source(spec, split="train"|"val", data_path=..., dataset_name=...,
    skip_corrupt=...)`` (``data_path`` overrides the catalog entry of ``dataset_name``);
    a map-style ``torch.utils.data.Dataset`` whose items are ``(image, label)``
    with a PIL image or ``(C, H, W)`` uint8/float tensor, exposing ``targets``
    (list of int labels) and ``num_classes``.
    """,
)
TRANSFORMS = Registry(
    "transform",
    """Image transforms producing views (``ssl_ext/data/transforms``).

    A callable taking one image and returning a list of view tensors
    ``(C, h, w)`` (one per view; SSL transforms return several).
    """,
)
PRIORS = Registry(
    "prior",
    """Cluster-size priors for PMSN (``ssl_ext/losses/priors``).

    Built with ``build_prior(spec, num_prototypes=K)``; returns a float tensor of
    shape ``(K,)``, positive, summing to 1, sorted in descending order.
    """,
)
OPTIMIZERS = Registry(
    "optimizer",
    """Optimizers (``ssl_ext/engine/optimizers``).

    Built with ``build_optimizer(spec, param_groups=[...])``; a
    ``torch.optim.Optimizer`` over the given parameter groups (each group carries
    its own ``weight_decay``; ``lr`` is set by the schedule every step).
    """,
)
ENGINES = Registry(
    "engine",
    """Top-level jobs chosen by ``config.ENGINE_NAME`` (``ssl_ext/engine``).

    A callable ``engine(cfg)`` run once per process (after distributed set-up),
    returning a JSON-serializable dict of results (or ``None``).
    """,
)

ALL_REGISTRIES = {
    r.kind: r for r in (LOSSES, HEADS, TRUNKS, SAMPLERS, HOOKS, DATA_SOURCES, TRANSFORMS, PRIORS, OPTIMIZERS, ENGINES)
}


def _also_register_with_classy_vision(name, cls):
    # Lets Classy Vision / VISSL trainers build our losses by name.
    from classy_vision.losses import LOSS_REGISTRY, register_loss as classy_register_loss

    if LOSS_REGISTRY.get(name) is not cls:
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
    "Registry", "RegistryError", "UnknownNameError", "DuplicateNameError", "PluginParamsError", "build", "spec_name_and_params",
    "load_plugins", "load_entry_point_plugins", "ensure_builtin_plugins", "ALL_REGISTRIES",
    "LOSSES", "HEADS", "TRUNKS", "SAMPLERS", "HOOKS", "DATA_SOURCES", "TRANSFORMS", "PRIORS", "OPTIMIZERS", "ENGINES",
    "register_loss", "register_head", "register_trunk", "register_sampler", "register_hook",
    "register_data_source", "register_transform", "register_prior", "register_optimizer", "register_engine",
    "build_loss", "build_head", "build_trunk", "build_sampler", "build_hook",
    "build_data_source", "build_transform", "build_prior", "build_optimizer", "build_engine",
]
