"""The build options do what meson_options.txt says (configure only: nothing is compiled)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("meson") is None, reason="meson not installed")
def test_tests_false_builds_no_test(tmp_path):
    build = tmp_path / "build"
    r = subprocess.run(["meson", "setup", str(build), str(SOURCE), "-Dtests=false"],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["meson", "introspect", "--tests", "--targets", str(build)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["tests"] == [], [t["name"] for t in info["tests"]]
    names = sorted(t["name"] for t in info["targets"])
    assert "backstop" in names, names
    assert not [n for n in names if n.startswith("test_") or n == "ldap_tool"], names


def readme_packages():
    text = (SOURCE / "README.md").read_text()
    block = text.split("Debian 12 packages:", 1)[1].split("```", 2)[1]
    words = block.replace("\\\n", " ").split()
    return {w for w in words if w not in ("apt-get", "install") and not w.startswith("#")
            and w not in ("for", "the", "tests", "too:", "Debian", "package", "(make", "deb)", "and", "its",
                          "test:")}


def test_readme_packages_are_the_ones_install_deps_installs():
    """README's apt-get lines and scripts/install-deps.sh name the same packages, and a library
    is listed only when meson.build links it."""
    script = (SOURCE / "scripts" / "install-deps.sh").read_text()
    listed = set(script.split("PACKAGES=(", 1)[1].split(")", 1)[0].split())
    assert readme_packages() == listed, (readme_packages() ^ listed)
    meson = (SOURCE / "meson.build").read_text()
    for lib, dep in (("libhiredis-dev", "hiredis"), ("redis-server", "redis")):
        assert (lib in listed) == (dep in meson), (lib, "listed but nothing uses it")
