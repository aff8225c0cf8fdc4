"""Composed, validated YAML configs (see configs_yaml/defaults.yaml)."""
from ssl_ext.config.compose import CONFIGS_ROOT, compose_config, resolve_config_path, save_config
from ssl_ext.config.errors import ConfigError
from ssl_ext.config.validate import validate_config

__all__ = ["CONFIGS_ROOT", "ConfigError", "compose_config", "resolve_config_path", "save_config", "validate_config"]
