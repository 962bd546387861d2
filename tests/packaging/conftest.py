"""pytest fixtures for tests/packaging; the helpers live in pkgtest.py."""

from pathlib import Path

import pytest

from pkgtest import UPGRADE_SUFFIX, VARIANT, Chroot, aarch64_binary, build_deb


@pytest.fixture(scope="session")
def deb_amd64() -> Path:
    return build_deb("amd64")


@pytest.fixture(scope="session")
def deb_amd64_upgrade() -> Path:
    return build_deb("amd64", UPGRADE_SUFFIX)


@pytest.fixture(scope="session")
def deb_arm64() -> Path:
    return build_deb("arm64")


@pytest.fixture(scope="session")
def aarch64_bin() -> Path:
    return aarch64_binary()


@pytest.fixture
def chroot_factory(tmp_path):
    made = []

    def make(arch: str, variant: str = VARIANT) -> Chroot:
        c = Chroot(arch, tmp_path, variant)
        made.append(c)
        return c

    yield make
    for c in made:
        c.remove()
