"""Paths and helpers shared by the external-plugin tests (a uniquely named module: test folders are not packages)."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTERNAL_PLUGIN = REPO / "tests" / "fixtures" / "external_plugin"
LISTED_PLUGIN_DIR = EXTERNAL_PLUGIN / "listed_in_config"
RUN_SCRIPT = REPO / "tools" / "run_distributed_engines.py"

# configs_yaml/demo/tiny_synthetic.yaml's settings spelled out, as a user's self-contained YAML would;
# {plugins}, {loss} and {extra_hooks} are the parts under test.
TINY_RUN_YAML = """\
# A user's training config outside configs_yaml: everything the run needs is in this file.
config:
  PLUGINS: {plugins}
  SEED_VALUE: 0
  DATA:
    TRAIN:
      DATA_SOURCES: [synthetic]
      SOURCE_PARAMS: {{num_images: 128, num_classes: 4, image_size: 16}}
      BATCHSIZE_PER_REPLICA: 16
      TRANSFORM: {{NAME: two_view, PARAMS: {{size: 16}}}}
  MODEL:
    TRUNK: {{NAME: small_cnn, PARAMS: {{widths: [8, 16], out_dim: 32}}}}
    HEADS: [{{NAME: mlp, PARAMS: {{dims: [32, 16]}}}}]
  LOSS: {loss}
  OPTIMIZER: {{NAME: sgd, BASE_LR: 0.05, BASE_LR_BATCH_SIZE: 16, NUM_EPOCHS: 2, MAX_ITERATIONS: 4}}
  HOOKS:
    LOG_FREQUENCY: 1
    MODEL_COMPLEXITY: {{ENABLED: false}}
    PLOT_CURVES: false
    EXTRA: {extra_hooks}
  CHECKPOINT: {{DIR: {run_dir}}}
"""


def write_run_yaml(path, run_dir, loss, extra_hooks, plugins="[]"):
    path.write_text(TINY_RUN_YAML.format(plugins=plugins, loss=loss, extra_hooks=extra_hooks, run_dir=run_dir))
    return path


def run_cli(args, cwd, python_paths=()):
    """``python tools/run_distributed_engines.py *args`` in a fresh process with ``python_paths`` on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, python_paths), *filter(None, [env.get("PYTHONPATH")])])
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, str(RUN_SCRIPT), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
