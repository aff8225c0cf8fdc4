"""Looking up a plugin imports the plugin folders only: no launcher, no experiment driver."""
import json
import subprocess
import sys

PROBE = """
import json, sys
import registry
registry.LOSSES.get("simclr_loss")
print(json.dumps(sorted(sys.modules)))
"""


def test_looking_up_a_loss_imports_neither_the_study_nor_the_slurm_launcher():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    modules = set(json.loads(out.strip().splitlines()[-1]))
    assert "ssl_ext.losses.simclr" in modules  # the look-up did load the built-in plugins
    unwanted = sorted(
        m for m in modules
        if m.startswith(("ssl_ext.studies", "ssl_ext.launch", "submitit")) or m == "ssl_ext.cli"
    )
    assert unwanted == []
