"""One real tiny training run shared by the hook tests: each hook's test file reads what its hook left."""
import json
import logging
from types import SimpleNamespace

import pytest


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """SimCLR on 128 synthetic 16x16 images, batch 16, 1 epoch: 8 optimizer updates, logged every 3rd."""
    from ssl_ext.config import compose_config
    from ssl_ext.launch.dispatch import launch

    run_dir = tmp_path_factory.mktemp("hooks") / "run"
    cfg = compose_config([
        "config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={run_dir}", "config.OPTIMIZER.NUM_EPOCHS=1",
        "config.HOOKS.LOG_FREQUENCY=3", "config.HOOKS.PROGRESS_BAR=off", "config.HOOKS.TENSORBOARD.ENABLED=true",
        "config.HOOKS.MODEL_COMPLEXITY.ENABLED=true", "config.HOOKS.PLOT_CURVES=true",
    ])
    handler = _Lines()
    train_logger = logging.getLogger("ssl_ext.train")
    train_logger.addHandler(handler)
    previous_level = train_logger.level
    train_logger.setLevel(logging.INFO)
    try:
        launch(cfg)
    finally:
        train_logger.removeHandler(handler)
        train_logger.setLevel(previous_level)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return SimpleNamespace(run_dir=run_dir, cfg=cfg, records=records, log_lines=handler.lines)
