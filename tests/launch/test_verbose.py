"""config.VERBOSE: rank 0 logs at DEBUG level and prints the composed config before the engine runs."""
import logging

from registry import ENGINES
from ssl_ext.config import compose_config
from ssl_ext.launch.worker import run_worker


def test_verbose_prints_the_config_and_lowers_the_log_level(tmp_path, caplog):
    seen = {}

    def level_probe(cfg):
        seen["level"] = logging.getLogger("ssl_ext").level
        return {}

    ENGINES.register(level_probe, name="test_verbose_level_probe")
    try:
        base = ["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}", "config.ENGINE_NAME=test_verbose_level_probe"]
        with caplog.at_level(logging.INFO, logger="ssl_ext"):
            run_worker(compose_config(base + ["config.VERBOSE=true"]))
        assert seen["level"] == logging.DEBUG
        assert "Composed config (config.VERBOSE=true)" in caplog.text and "BATCHSIZE_PER_REPLICA: 16" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ssl_ext"):
            run_worker(compose_config(base))
        assert seen["level"] == logging.INFO
        assert "Composed config" not in caplog.text
    finally:
        ENGINES.remove("test_verbose_level_probe")
