"""Config composition (defaults.yaml + selected YAML + overrides, through hydra) and validation errors.

Layout reminder: compose_config puts configs_yaml/defaults.yaml at the root and every YAML under
configs_yaml in a hydra config group named ``config`` (a user's YAML outside configs_yaml is added to
that group too). So inside a YAML's own ``defaults:`` list:

* ``- /config/<path under configs_yaml>@_here_`` includes a YAML of configs_yaml, merged at the top
  level (``@_here_``: our YAMLs already start with ``config:``);
* ``- <path under configs_yaml>@_here_`` (relative) means the same: every selected YAML is an option of
  the ``config`` group, so relative entries start at configs_yaml, also for a user's YAML elsewhere;
* ``- _self_`` last makes the including file's own values win (hydra 1.1+ order: later wins).
"""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssl_ext.config import ConfigError, compose_config, config_root

TINY = "config=demo/tiny_synthetic"


def compose(*overrides):
    return compose_config([TINY, *overrides])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def error_of(*overrides) -> str:
    with pytest.raises(ConfigError) as info:
        compose_config(list(overrides))
    return str(info.value)


# ----------------------------------------------------------------------------- composition
def test_defaults_yaml_and_overrides_land_with_their_types():
    cfg = compose(
        "config.SEED_VALUE=7",
        "config.OPTIMIZER.BASE_LR=0.3",
        "config.DETERMINISTIC=true",
        "config.OPTIMIZER.LR_SCHEDULE.MILESTONES=[1,3]",
        "config.DATA.TRAIN.DATA_SOURCES=[synthetic,synthetic]",
        "config.DATA.TRAIN.DATASET_NAMES=['','']",
        "config.LOSS.PARAMS.temperature=0.25",
        "config.CHECKPOINT.DIR=/tmp/somewhere",
    ).config
    assert cfg.SEED_VALUE == 7 and type(cfg.SEED_VALUE) is int
    assert cfg.OPTIMIZER.BASE_LR == 0.3 and type(cfg.OPTIMIZER.BASE_LR) is float
    assert cfg.DETERMINISTIC is True
    assert list(cfg.OPTIMIZER.LR_SCHEDULE.MILESTONES) == [1, 3]
    assert list(cfg.DATA.TRAIN.DATA_SOURCES) == ["synthetic", "synthetic"]
    assert cfg.LOSS.PARAMS == {"temperature": 0.25}  # a free-form PARAMS key needs no '+'
    assert cfg.CHECKPOINT.DIR == "/tmp/somewhere"
    # Not overridden: the selected YAML's value, else defaults.yaml's.
    assert cfg.DATA.TRAIN.BATCHSIZE_PER_REPLICA == 16 and cfg.OPTIMIZER.BASE_LR_BATCH_SIZE == 16
    assert cfg.CHECKPOINT.KEEP_LAST == 3 and cfg.OPTIMIZER.NAME == "sgd"


def test_an_int_is_accepted_where_a_float_is_expected():
    assert compose("config.OPTIMIZER.BASE_LR=1").config.OPTIMIZER.BASE_LR == 1


def test_no_config_selected_gives_defaults_yaml():
    cfg = compose_config([])
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(OmegaConf.load(config_root() / "defaults.yaml"))


@pytest.mark.parametrize(
    "selection",
    [
        "demo/tiny_synthetic",
        "demo/tiny_synthetic.yaml",
        str(config_root() / "demo" / "tiny_synthetic.yaml"),
        str(config_root() / "demo" / "tiny_synthetic"),
    ],
    ids=["relative", "relative.yaml", "absolute.yaml", "absolute"],
)
def test_config_can_be_selected_relative_to_configs_yaml_or_absolute_with_or_without_suffix(selection):
    cfg = compose_config([f"config={selection}"])
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(compose_config([TINY]))
    assert cfg.config.DATA.TRAIN.SOURCE_PARAMS.image_size == 16  # the YAML, not only defaults.yaml


def test_a_users_yaml_outside_configs_yaml_is_merged_over_defaults(tmp_path):
    user = write(tmp_path / "mine.yaml", "config:\n  SEED_VALUE: 11\n  OPTIMIZER:\n    NUM_EPOCHS: 3\n")
    cfg = compose_config([f"config={user}", "config.OPTIMIZER.NUM_EPOCHS=5"]).config
    assert (cfg.SEED_VALUE, cfg.OPTIMIZER.NUM_EPOCHS, cfg.OPTIMIZER.BASE_LR) == (11, 5, 0.1)


def test_unknown_config_file_names_what_was_tried_and_the_closest_config():
    message = error_of("config=demo/tiny_synthetc")
    assert "demo/tiny_synthetc" in message and "Did you mean config=demo/tiny_synthetic?" in message


def test_yaml_with_its_own_defaults_list_includes_a_config_of_configs_yaml(tmp_path):
    child = write(
        tmp_path / "child.yaml",
        "defaults:\n"
        "  - /config/demo/tiny_synthetic@_here_\n"
        "  - _self_\n"
        "config:\n"
        "  OPTIMIZER:\n"
        "    BASE_LR: 0.5\n",
    )
    cfg = compose_config([f"config={child}", "config.SEED_VALUE=4"]).config
    assert cfg.OPTIMIZER.BASE_LR == 0.5  # the including file wins over what it includes (_self_ last)
    assert cfg.DATA.TRAIN.SOURCE_PARAMS.image_size == 16  # included from tiny_synthetic
    assert cfg.MODEL.TRUNK.PARAMS.widths == [8, 16]
    assert cfg.SEED_VALUE == 4  # the command line wins over both


def test_defaults_list_order_decides_who_wins(tmp_path):
    child = write(
        tmp_path / "child.yaml",
        "defaults:\n  - _self_\n  - /config/demo/tiny_synthetic@_here_\n"
        "config:\n  OPTIMIZER:\n    BASE_LR: 0.5\n    CLIP_GRAD_NORM: 2.0\n",
    )
    cfg = compose_config([f"config={child}"]).config
    assert cfg.OPTIMIZER.BASE_LR == 0.05  # _self_ first: tiny_synthetic's value overrides ours
    assert cfg.OPTIMIZER.CLIP_GRAD_NORM == 2.0  # a key tiny_synthetic does not set stays ours


def test_relative_defaults_entries_start_at_configs_yaml(tmp_path):
    child = write(
        tmp_path / "child.yaml",
        "defaults:\n  - demo/tiny_synthetic@_here_\n  - _self_\nconfig:\n  OPTIMIZER:\n    NUM_EPOCHS: 9\n",
    )
    cfg = compose_config([f"config={child}"]).config
    assert (cfg.OPTIMIZER.NUM_EPOCHS, cfg.OPTIMIZER.BASE_LR) == (9, 0.05)


def test_plus_adds_a_key_inside_a_free_form_section():
    cfg = compose("+config.DATA.TRAIN.SOURCE_PARAMS.noise_std=0.1").config
    assert cfg.DATA.TRAIN.SOURCE_PARAMS.noise_std == 0.1
    assert cfg.DATA.TRAIN.SOURCE_PARAMS.num_images == 128  # the YAML's other entries stay


def test_plus_cannot_smuggle_an_unknown_key_past_validation():
    # hydra accepts the '+' addition, but every ssl_ext key must exist in defaults.yaml: a new key is a
    # typo as far as ssl_ext can tell, so it is an error naming where it came from.
    message = error_of(TINY, "+config.NEW.KEY=1")
    assert "Unknown config key 'config.NEW'" in message
    assert "+config.NEW.KEY=1" in message


def test_key_without_plus_that_does_not_exist_says_how_to_add_one():
    message = error_of(TINY, "config.OPTIMIZER.NEW_KEY=1")
    assert "'config.OPTIMIZER.NEW_KEY'" in message and "+config.OPTIMIZER.NEW_KEY=<value>" in message


# ----------------------------------------------------------------------------- validation errors
def test_typo_key_in_a_yaml_names_the_file_and_the_closest_valid_key(tmp_path):
    user = write(
        tmp_path / "typo.yaml", "config:\n  DATA:\n    TRAIN:\n      BATCHSIZE_PER_REPLCA: 8\n"
    )
    message = error_of(f"config={user}")
    assert "'config.DATA.TRAIN.BATCHSIZE_PER_REPLCA'" in message
    assert "Did you mean 'config.DATA.TRAIN.BATCHSIZE_PER_REPLICA'?" in message
    assert str(user) in message


def test_typo_key_in_an_override_names_the_closest_valid_key():
    message = error_of(TINY, "config.DATA.TRAIN.BATCHSIZE_PER_REPLCA=8")
    assert "'config.DATA.TRAIN.BATCHSIZE_PER_REPLCA'" in message
    assert "Did you mean 'config.DATA.TRAIN.BATCHSIZE_PER_REPLICA'?" in message


def test_typo_in_a_section_name_is_found_too():
    message = error_of(TINY, "config.OPTIMISER.BASE_LR=0.1")
    assert "Did you mean 'config.OPTIMIZER" in message


@pytest.mark.parametrize(
    "override,key,value,expected",
    [
        ("config.OPTIMIZER.NUM_EPOCHS=abc", "config.OPTIMIZER.NUM_EPOCHS", "'abc'", "int"),
        ("config.OPTIMIZER.NUM_EPOCHS=[1,2]", "config.OPTIMIZER.NUM_EPOCHS", "[1, 2]", "int"),
        ("config.OPTIMIZER.NUM_EPOCHS=1.5", "config.OPTIMIZER.NUM_EPOCHS", "1.5", "int"),
        ("config.OPTIMIZER.BASE_LR=fast", "config.OPTIMIZER.BASE_LR", "'fast'", "float"),
        ("config.DETERMINISTIC=yes", "config.DETERMINISTIC", "'yes'", "bool"),
        ("config.DATA.TRAIN.DATA_SOURCES=synthetic", "config.DATA.TRAIN.DATA_SOURCES", "'synthetic'", "list"),
        ("config.MODEL.TRUNK=small_cnn", "config.MODEL.TRUNK", "'small_cnn'", "mapping"),
    ],
)
def test_wrong_type_in_an_override_names_key_value_expected_type_and_the_override(override, key, value, expected):
    message = error_of(TINY, override)
    assert f"{key!r} = {value}" in message
    assert f"expected {expected}" in message
    assert f"command-line override {override!r}" in message


def test_wrong_type_in_a_yaml_names_the_file(tmp_path):
    user = write(tmp_path / "bad_type.yaml", "config:\n  OPTIMIZER:\n    NUM_EPOCHS: ten\n")
    message = error_of(f"config={user}")
    assert "'config.OPTIMIZER.NUM_EPOCHS' = 'ten'" in message and "expected int" in message and str(user) in message


def test_missing_required_value_in_a_yaml_is_an_error(tmp_path):
    # A template leaves a plugin parameter for the command line. (Only where nothing earlier set it:
    # like hydra, merging '???' over an existing value keeps that value.)
    user = write(tmp_path / "template.yaml", "config:\n  LOSS:\n    PARAMS:\n      temperature: ???\n")
    message = error_of(f"config={user}")
    assert "'config.LOSS.PARAMS.temperature' is required" in message and str(user) in message
    assert "config.LOSS.PARAMS.temperature=<value>" in message
    # Setting it on the command line completes the config.
    cfg = compose_config([f"config={user}", "config.LOSS.PARAMS.temperature=0.4"])
    assert cfg.config.LOSS.PARAMS.temperature == 0.4


@pytest.mark.parametrize(
    "override,key",
    [
        ("config.DATA.TRAIN.DATA_SOURCES=???", "config.DATA.TRAIN.DATA_SOURCES"),
        ("config.MODEL.HEADS=[{NAME: mlp, PARAMS: {dims: ???}}]", "config.MODEL.HEADS[0].PARAMS.dims"),
    ],
)
def test_missing_required_value_from_an_override_is_an_error(override, key):
    message = error_of(TINY, override)
    assert f"{key!r} is required" in message and f"command-line override {override!r}" in message


def test_invalid_yaml_syntax_is_a_config_error_naming_file_and_line(tmp_path):
    user = write(tmp_path / "broken.yaml", "config:\n  LOSS: {NAME: simclr_loss, PARAMS: {temperature: ???}}\n")
    message = error_of(f"config={user}")
    assert "Not valid YAML" in message and str(user) in message and "line 2" in message


def test_unresolvable_interpolation_is_a_config_error_naming_the_key(tmp_path):
    user = write(tmp_path / "interp.yaml", "config:\n  CHECKPOINT:\n    DIR: ${config.NO_SUCH_KEY}/run\n")
    message = error_of(f"config={user}")
    assert "'config.CHECKPOINT.DIR'" in message and "config.NO_SUCH_KEY" in message
    good = write(tmp_path / "interp_ok.yaml", "config:\n  CHECKPOINT:\n    DIR: /runs/seed${config.SEED_VALUE}\n")
    assert compose_config([f"config={good}", "config.SEED_VALUE=5"]).config.CHECKPOINT.DIR == "/runs/seed5"


def test_misspelled_loss_parameter_is_caught_before_the_run(tmp_path):
    message = error_of(TINY, "config.LOSS.PARAMS.temperatur=0.3")
    assert "config.LOSS" in message and "'temperatur'" in message and "Did you mean 'temperature'?" in message
    user = write(
        tmp_path / "loss_typo.yaml",
        "defaults:\n  - /config/demo/tiny_synthetic@_here_\n  - _self_\n"
        "config:\n  LOSS:\n    PARAMS: {tempreature: 0.3}\n",
    )
    assert "Did you mean 'temperature'?" in error_of(f"config={user}")


@pytest.mark.parametrize(
    "override,where,typo,suggestion",
    [
        ("config.MODEL.TRUNK.PARAMS.width=[4]", "config.MODEL.TRUNK", "'width'", "'widths'"),
        ("config.MODEL.HEADS=[{NAME: mlp, PARAMS: {dim: [4]}}]", "config.MODEL.HEADS[0]", "'dim'", "'dims'"),
        ("config.MODEL.STUDENT_ONLY_HEADS=[{NAME: mlp, PARAMS: {dimz: [4]}}]", "config.MODEL.STUDENT_ONLY_HEADS[0]",
         "'dimz'", "'dims'"),
        ("config.OPTIMIZER.PARAMS.momentun=0.5", "config.OPTIMIZER", "'momentun'", "'momentum'"),
        ("config.DATA.TRAIN.SOURCE_PARAMS.num_imagez=8", "config.DATA.TRAIN.SOURCE_PARAMS", "'num_imagez'",
         "'num_images'"),
        ("config.HOOKS.EXTRA=[{NAME: metrics_jsonl, PARAMS: {file_name: m.jsonl}}]", "config.HOOKS.EXTRA[0]",
         "'file_name'", "'filename'"),
    ],
    ids=["trunk", "head", "student_only_head", "optimizer", "data_source", "hook"],
)
def test_misspelled_parameter_of_any_plugin_section_is_caught(override, where, typo, suggestion):
    message = error_of(TINY, override)
    assert where in message and typo in message and f"Did you mean {suggestion}?" in message


@pytest.mark.parametrize(
    "override,kind,suggestion",
    [
        ("config.ENGINE_NAME=trian", "engine", "train"),
        ("config.LOSS.NAME=simclr", "loss", "simclr_loss"),
        ("config.MODEL.TRUNK.NAME=small_cn", "trunk", "small_cnn"),
        ("config.DATA.TRAIN.SAMPLER.NAME=distributed_shufle", "sampler", "distributed_shuffle"),
        ("config.DATA.TRAIN.DATA_SOURCES=[synthetik]", "data source", "synthetic"),
        ("config.DATA.TRAIN.TRANSFORM.NAME=two_views", "transform", "two_view"),
    ],
)
def test_unknown_plugin_name_is_an_error_with_the_closest_name(override, kind, suggestion):
    message = error_of(TINY, override)
    assert f"Unknown {kind} " in message and f"Did you mean {suggestion!r}?" in message


def test_top_level_keys_outside_config_are_rejected(tmp_path):
    user = write(tmp_path / "flat.yaml", "OPTIMIZER:\n  BASE_LR: 0.1\n")
    message = error_of(f"config={user}")
    assert "OPTIMIZER" in message and "under 'config:'" in message
