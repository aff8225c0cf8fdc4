"""The external plugin fixture package, installed the way a user installs one."""
import shutil
import subprocess
import sys

import pytest

from external_plugin_testing import EXTERNAL_PLUGIN


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory):
    """A site directory holding the pip-installed ``ssl-ext-example-plugin`` (its dist-info carries the
    ``ssl_ext.plugins`` entry point).

    Installed with ``pip --target`` rather than into the shared venv: the wheel is built from the fixture's
    pyproject.toml exactly as for a user, but other test sessions running in the same venv never see it
    and nothing needs uninstalling. Subprocesses put the directory on PYTHONPATH, where importlib.metadata
    finds the entry point. Offline: no index, no build isolation, no dependencies.
    """
    source = tmp_path_factory.mktemp("plugin_source") / "external_plugin"
    # Build from a copy so setuptools' build/ and *.egg-info never land in the repository.
    shutil.copytree(
        EXTERNAL_PLUGIN, source, ignore=shutil.ignore_patterns("listed_in_config", "__pycache__", "build", "*.egg-info")
    )
    site = tmp_path_factory.mktemp("plugin_site")
    command = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation",
        "--disable-pip-version-check", "--quiet", "--target", str(site), str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip install of the fixture plugin failed:\n{result.stdout}\n{result.stderr}"
    return site

