"""The plugin contract, as a third-party author meets it.

For every registry, a plugin whose signature is exactly the registry's declared build
context (plus one ``PARAMS`` entry of its own) is registered, named in a user's YAML and
run through the path a user takes: ``compose_config`` (validation) and a launch. It must
validate, be built, and receive exactly the declared context. A registry added later
without a row in ``CONFIG_PATHS`` fails here, so the contract of every kind stays tested.
"""
from typing import Any, Callable, Dict

import pytest
from omegaconf import OmegaConf

import registry
from ssl_ext.config import compose_config, config_root
from ssl_ext.hooks.base import SSLHook
from ssl_ext.launch.dispatch import launch

MARKER = 7  # the plugin's own PARAMS entry: proves PARAMS arrive next to the context
RECEIVED: Dict[str, Dict[str, Any]] = {}


def _small_source(ctx):
    return registry.build_data_source(
        {"NAME": "synthetic", "PARAMS": {"num_images": 32, "num_classes": 4, "image_size": 16}}, **ctx)


# kind -> (base config, how the YAML names the plugin, what the plugin returns given its context).
# The plugin returns a real built-in of its kind, so the run it is part of really trains.
CONFIG_PATHS: Dict[str, Any] = {
    "loss": ("demo/tiny_synthetic", {"config.LOSS": {"NAME": "contract_loss", "PARAMS": {"marker": MARKER}}},
             lambda ctx: registry.build_loss({"NAME": "simclr_loss", "PARAMS": {"temperature": 0.2}})),
    "head": ("demo/tiny_synthetic", {"config.MODEL.HEADS": [{"NAME": "contract_head", "PARAMS": {"marker": MARKER}}]},
             lambda ctx: registry.build_head({"NAME": "mlp", "PARAMS": {"dims": [16]}}, **ctx)),
    "trunk": ("demo/tiny_synthetic", {"config.MODEL.TRUNK": {"NAME": "contract_trunk", "PARAMS": {"marker": MARKER}}},
              lambda ctx: registry.build_trunk({"NAME": "small_cnn", "PARAMS": {"widths": [8], "out_dim": 16}})),
    "sampler": ("demo/tiny_synthetic", {"config.DATA.TRAIN.SAMPLER": {"NAME": "contract_sampler", "PARAMS": {"marker": MARKER}}},
                lambda ctx: registry.build_sampler("distributed_shuffle", **ctx)),
    "hook": ("demo/tiny_synthetic", {"config.HOOKS.EXTRA": [{"NAME": "contract_hook", "PARAMS": {"marker": MARKER}}]},
             lambda ctx: SSLHook()),
    "data source": ("demo/tiny_synthetic", {"config.DATA.TRAIN.DATA_SOURCES": ["contract_data_source"],
                                            "config.DATA.TRAIN.SOURCE_PARAMS": {"marker": MARKER}},
                    _small_source),
    "transform": ("demo/tiny_synthetic", {"config.DATA.TRAIN.TRANSFORM": {"NAME": "contract_transform", "PARAMS": {"marker": MARKER}}},
                  lambda ctx: registry.build_transform({"NAME": "two_view", "PARAMS": {"size": 16}})),
    # PMSN's tiny config on 128 synthetic 1-channel images (2 steps) instead of long-tailed digits.
    "prior": ("pretrain/pmsn/pmsn_cpu_tiny", {"config.LOSS.PARAMS.prior": {"NAME": "contract_prior", "PARAMS": {"marker": MARKER}},
                                              "config.DATA.TRAIN.DATA_SOURCES": ["synthetic"],
                                              "config.DATA.TRAIN.SOURCE_PARAMS": {"num_images": 128, "num_classes": 4,
                                                                                  "image_size": 16, "channels": 1},
                                              "config.DATA.TRAIN.LONG_TAIL": {"ENABLED": False},
                                              "config.HOOKS.EXTRA": []},
              lambda ctx: registry.build_prior("power_law", **ctx)),
    "optimizer": ("demo/tiny_synthetic", {"config.OPTIMIZER.NAME": "contract_optimizer", "config.OPTIMIZER.PARAMS": {"marker": MARKER}},
                  lambda ctx: registry.build_optimizer("sgd", **ctx)),
    "engine": ("demo/tiny_synthetic", {"config.ENGINE_NAME": "contract_engine"},
               lambda ctx: {"engine": "contract_engine", "epochs": int(ctx["cfg"].config.OPTIMIZER.NUM_EPOCHS)}),
}


def plugin_with_exactly(kind: str, make: Callable[[Dict[str, Any]], Any]) -> Callable:
    """A plugin function whose parameters are the kind's declared context (+ ``marker``), nothing else."""
    names = list(registry.ALL_REGISTRIES[kind].context_names) + ([] if kind == "engine" else ["marker"])
    source = f"def plugin({', '.join(names)}):\n    return _received({kind!r}, dict({', '.join(f'{n}={n}' for n in names)}))\n"

    def received(kind_: str, kwargs: Dict[str, Any]) -> Any:
        RECEIVED[kind_] = kwargs
        return make({k: v for k, v in kwargs.items() if k != "marker"})

    namespace = {"_received": received}
    exec(source, namespace)
    return namespace["plugin"]


def user_yaml(tmp_path, base: str, sections: Dict[str, Any]) -> str:
    """The base config with the plugin named in it, written as a user's YAML outside configs_yaml."""
    cfg = OmegaConf.load(config_root() / f"{base}.yaml")
    for key, value in sections.items():
        OmegaConf.update(cfg, key, value, merge=False)
    path = tmp_path / "contract.yaml"
    path.write_text("# @package _global_\n" + OmegaConf.to_yaml(cfg))
    return str(path)


def test_every_registry_has_a_config_path_here():
    assert sorted(registry.ALL_REGISTRIES) == sorted(CONFIG_PATHS)


@pytest.fixture
def registered():
    """Register plugins for one test only, so registry-parametrized tests elsewhere never see them."""
    added = []

    def register(reg, name, plugin):
        reg.register(plugin, name=name)
        added.append((reg, name))

    yield register
    for reg, name in added:
        reg.remove(name)


@pytest.mark.parametrize("kind", sorted(registry.ALL_REGISTRIES))
def test_a_plugin_accepting_exactly_the_declared_context_builds_through_the_config(kind, tmp_path, registered):
    reg = registry.ALL_REGISTRIES[kind]
    base, sections, make = CONFIG_PATHS[kind]
    registered(reg, f"contract_{kind.replace(' ', '_')}", plugin_with_exactly(kind, make))
    RECEIVED.pop(kind, None)
    cfg = compose_config([
        f"config={user_yaml(tmp_path, base, sections)}", f"config.CHECKPOINT.DIR={tmp_path / 'run'}",
        "config.OPTIMIZER.NUM_EPOCHS=1", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.PLOT_CURVES=false",
    ])
    result = launch(cfg)
    assert kind in RECEIVED, f"the {kind} plugin was never built"
    expected = set(reg.context_names) | ({"marker"} if kind != "engine" else set())
    assert set(RECEIVED[kind]) == expected
    if kind != "engine":
        assert RECEIVED[kind]["marker"] == MARKER
    else:
        assert result == {"engine": "contract_engine", "epochs": 1}


def test_a_plugin_breaking_the_return_contract_is_named_when_built(registered):
    registered(registry.HEADS, "contract_broken_head", lambda in_dim: object())
    with pytest.raises(registry.PluginContractError, match="head 'contract_broken_head' .* not a torch.nn.Module"):
        registry.build_head("contract_broken_head", in_dim=4)


@pytest.mark.parametrize("kind", sorted(registry.ALL_REGISTRIES))
def test_the_docstring_states_the_declared_contract(kind):
    reg = registry.ALL_REGISTRIES[kind]
    assert reg.contract_doc() in reg.__doc__
    for name in reg.context_names:
        assert f"``{name}``" in reg.__doc__
    builder = getattr(registry, f"build_{kind.replace(' ', '_')}")
    assert builder == reg.build
