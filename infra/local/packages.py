"""OS packages the stack needs: found on PATH, or installed with apt-get when we are root."""

from __future__ import annotations

import os
import shutil
import subprocess

from infra.local.errors import MissingDependencyError

_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def _apt_install(packages: list[str]) -> subprocess.CompletedProcess[str]:
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **_APT_ENV})


def ensure_binaries(
    binaries: list[str], packages: list[str], search: list[str] | None = None
) -> dict[str, str]:
    """The path of each binary; missing ones are installed from Debian ``packages`` when running as root.

    ``search`` lists extra directories to look in before PATH.
    """
    found = _find(binaries, search)
    missing = [b for b in binaries if b not in found]
    if not missing:
        return found
    command = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise MissingDependencyError(
            f"{', '.join(missing)} not found (Debian packages: {', '.join(packages)})",
            f"install them: sudo {command}",
        )
    proc = _apt_install(packages)
    if proc.returncode != 0:
        # A machine with empty package lists needs an update first.
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env={**os.environ, **_APT_ENV})
        proc = _apt_install(packages)
    found = _find(binaries, search)
    still = [b for b in binaries if b not in found]
    if proc.returncode != 0 or still:
        out = "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise MissingDependencyError(
            f"could not install {', '.join(packages)} for {', '.join(still or missing)}:\n    {out}",
            f"run `apt-get update && {command}` as root and look at its output",
        )
    return found


def _find(binaries: list[str], search: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for binary in binaries:
        for directory in search or []:
            candidate = os.path.join(directory, binary)
            if os.access(candidate, os.X_OK):
                found[binary] = candidate
                break
        else:
            path = shutil.which(binary)
            if path:
                found[binary] = path
    return found
