"""Fixtures for the SLURM launcher tests: a real single-node cluster, brought up by tools/slurm_cluster.sh.

The cluster needs root (packages, system daemons) and apt (to install them).
Where either is missing the cluster tests skip and say why; with CI=true they
fail instead, because CI must exercise them.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from slurm_testing import CLUSTER_SCRIPT, PARTITION, cluster_unavailable_reason


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Start (or reuse) the single-node cluster; return its partition name."""
    reason = cluster_unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the SLURM tests cannot run: {reason}")
        pytest.skip(reason)
    result = subprocess.run([str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"{CLUSTER_SCRIPT} start failed:\n{result.stdout}\n{result.stderr}")
    return PARTITION
