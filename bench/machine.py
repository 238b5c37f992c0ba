"""Machine facts recorded with every benchmark result."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(
    packages: tuple[str, ...] = ("numpy", "numba", "confluent-kafka", "faust-streaming", "fastavro"),
) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
    }
