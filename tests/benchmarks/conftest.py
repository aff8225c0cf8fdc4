"""Shared configs for the benchmark tests: composed once per session, copied per test."""
import copy

import pytest


@pytest.fixture(scope="session")
def _digits_cfg():
    from ssl_ext.config import compose_config

    return compose_config(["config=benchmark/tiny/digits_knn", "config.MACHINE.DEVICE=cpu"])


@pytest.fixture
def digits_cfg(_digits_cfg, tmp_path):
    cfg = copy.deepcopy(_digits_cfg)
    cfg.config.CHECKPOINT.DIR = str(tmp_path / "run")
    return cfg
