"""One YAML root and one resolver: config=, sweep= and --plan names all mean the same files."""
import os

import pytest

from ssl_ext.config import ConfigError, config_root, resolve_yaml
from ssl_ext.config.paths import CONFIGS_ENV


def test_the_root_holds_the_shipped_defaults():
    assert (config_root() / "defaults.yaml").is_file()


def test_a_name_under_the_root_resolves_with_or_without_suffix():
    expected = (config_root() / "demo" / "tiny_synthetic.yaml").resolve()
    assert resolve_yaml("demo/tiny_synthetic") == expected
    assert resolve_yaml("demo/tiny_synthetic.yaml") == expected
    assert resolve_yaml(str(expected)) == expected


def test_the_root_is_searched_before_the_working_directory(tmp_path, monkeypatch):
    shadow = tmp_path / "demo" / "tiny_synthetic.yaml"
    shadow.parent.mkdir()
    shadow.write_text("{}\n")
    own = tmp_path / "mine.yaml"
    own.write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_yaml("demo/tiny_synthetic") == (config_root() / "demo" / "tiny_synthetic.yaml").resolve()
    assert resolve_yaml("mine") == own.resolve()


def test_the_environment_variable_moves_the_root(tmp_path, monkeypatch):
    (tmp_path / "x.yaml").write_text("{}\n")
    monkeypatch.setenv(CONFIGS_ENV, str(tmp_path))
    assert config_root() == tmp_path
    assert resolve_yaml("x") == (tmp_path / "x.yaml").resolve()


def test_a_missing_name_lists_what_was_tried_and_the_closest_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve_yaml("demo/tiny_synthetc", what="sweep")
    message = str(err.value)
    assert message.startswith("sweep=demo/tiny_synthetc: no such YAML file")
    assert str(config_root() / "demo" / "tiny_synthetc.yaml") in message
    assert os.path.join(str(tmp_path), "demo", "tiny_synthetc") in message
    assert "Did you mean sweep=demo/tiny_synthetic?" in message
