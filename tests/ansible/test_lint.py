"""ansible/ passes yamllint, ansible-lint's production profile and
ansible-playbook --syntax-check on every playbook."""

import os
import shutil
import subprocess

import pytest

from cluster import ANSIBLE_DIR

PLAYBOOKS = ["bootstrap.yml", "site.yml", "install.yml", "reboot.yml", "shutdown.yml", "rolling-upgrade.yml"]


def tool(name, *args, env=None):
    if shutil.which(name) is None:
        pytest.fail(f"{name} missing (tests/ansible/apt-packages.txt)")
    e = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ANSIBLE_DIR, "ansible.cfg"), NO_COLOR="1",
             ANSIBLE_HOME="/tmp/halo-ansible-lint-home", **(env or {}))
    r = subprocess.run([name, *args], cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=600, env=e)
    assert r.returncode == 0, f"{name} {' '.join(args)}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def test_yamllint_clean():
    tool("yamllint", "--strict", ".")


def test_ansible_lint_production_profile():
    r = tool("ansible-lint", "--profile", "production", "--offline")
    assert "production" in r.stdout + r.stderr


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook):
    tool("ansible-playbook", "--syntax-check", "-i", "inventories/example.ini", playbook)


def test_every_playbook_is_checked():
    found = sorted(f for f in os.listdir(ANSIBLE_DIR) if f.endswith(".yml"))
    assert found == sorted(PLAYBOOKS)
