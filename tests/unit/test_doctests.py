"""The docstring examples of every package module run as tests (pytest's --doctest-modules only collects
the files under ``tests/``). A module that fails to import fails here too."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("processors", "sinks", "schemas", "streams", "bench", "infra.local", "triton_models")


def _modules() -> list[str]:
    names: list[str] = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            if info.name.endswith("__main__") or ".1." in info.name or info.name.endswith(".model"):
                continue  # entry points and Triton's python-backend model files run elsewhere
            names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_package_is_walked() -> None:
    assert len(MODULES) > 50, MODULES
    assert "processors.indicators.batch" in MODULES and "bench.runner" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
