"""pytest fixtures for tests/health: the halo binary and a real nginx."""

import shutil

import pytest

from healthfix import NGINX, Nginx, halo_bin


@pytest.fixture(scope="session")
def halo():
    return halo_bin()


@pytest.fixture
def nginx(tmp_path):
    if not shutil.which(NGINX):
        pytest.skip(f"{NGINX} not installed (tests/apt-packages.txt installs nginx-light)")
    n = Nginx(tmp_path)
    try:
        yield n
    finally:
        n.stop()
