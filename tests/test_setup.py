"""`make test` sets up what it can: scripts/phone-tools.sh installs the phone-side Debian tools when they are
missing and the machine allows it, and otherwise names the one command to run (failing only under CI=true).
Run here against stub commands on a PATH without the tools, so nothing is installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "phone-tools.sh"


def _stubs(folder: Path, uid: int, sudo: bool) -> Path:
    """A bin folder with `id`, `apt-get` (recording its arguments) and maybe a password-less `sudo`."""
    folder.mkdir()
    log = folder / "apt.log"
    scripts = {"id": f"echo {uid}", "apt-get": f'echo "$@" >> {log}'}
    if sudo:
        scripts["sudo"] = 'if [ "$1" = "-n" ]; then exit 0; fi; "$@"'
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/bash\n{body}\n")
        (folder / name).chmod(0o755)
    return log


def _run(bin_folder: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_folder), "CI": "true" if ci else ""}
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("uid", "sudo"), [(0, False), (1000, True)])
def test_missing_tools_are_installed_where_allowed(tmp_path: Path, uid: int, sudo: bool) -> None:
    log = _stubs(tmp_path / "bin", uid, sudo)
    result = _run(tmp_path / "bin", ci=False)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq"
    # kotlinc, chromium, node and npm are not on this PATH (the jars are looked up under /usr/share/java).
    assert calls[1].startswith("install -y -qq kotlin") and calls[1].endswith("chromium nodejs npm"), calls


def test_without_root_it_names_the_command(tmp_path: Path) -> None:
    log = _stubs(tmp_path / "bin", 1000, sudo=False)
    result = _run(tmp_path / "bin", ci=False)
    assert result.returncode == 0 and not log.exists()
    assert "needs root" in result.stderr and "sudo apt-get install -y kotlin" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _run(tmp_path / "bin", ci=True).returncode == 1  # CI must run every test


def test_make_test_runs_it_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_line = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert test_line.split(":")[1].split()[0] == "phone-tools"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
