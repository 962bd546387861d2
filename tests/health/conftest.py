"""pytest fixtures for tests/health: the halo binary and a real nginx."""

import os
import shutil

import pytest

from healthfix import NGINX, Nginx, halo_bin


@pytest.fixture(scope="session")
def halo():
    return halo_bin()


@pytest.fixture
def nginx(tmp_path):
    if not shutil.which(NGINX):
        why = f"{NGINX} not installed (tests/apt-packages.txt installs nginx-light)"
        # tests/run.sh installs it and sets this: there, missing is a failure.
        if os.environ.get("HALO_REQUIRE_NGINX") == "1":
            pytest.fail(why)
        pytest.skip(why)
    n = Nginx(tmp_path)
    try:
        yield n
    finally:
        n.stop()
