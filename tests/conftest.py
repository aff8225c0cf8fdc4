"""Suite-wide settings. Per-area fixtures live next to their tests."""
import os

# Tests run the trainer in-process: make CPU runs deterministic and quiet about thread oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    for rule in (
        "ignore:`torch.jit.script` is deprecated:FutureWarning",
        "ignore::DeprecationWarning:tensorboard.*",
    ):
        config.addinivalue_line("filterwarnings", rule)
