"""Composed, validated YAML configs (see configs_yaml/defaults.yaml)."""
from ssl_ext.config.compose import compose_config, resolve_config_path, save_config
from ssl_ext.config.errors import ConfigError
from ssl_ext.config.paths import config_root, resolve_yaml
from ssl_ext.config.validate import validate_config

__all__ = [
    "ConfigError", "compose_config", "config_root", "resolve_config_path", "resolve_yaml", "save_config", "validate_config",
]
