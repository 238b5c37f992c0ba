"""Build ``wasm/indicators.wasm`` from ``wasm/indicators.c`` with the PyPI ``ziglang`` wheel (pip, no apt).

Usage (from the project root)::

    python wasm/build.py --check        # `make wasm`: build in a temp dir, compare with the committed file
    python wasm/build.py --update       # `make wasm-update`: rebuild wasm/indicators.wasm in place
    python wasm/build.py --output PATH  # build to PATH

The build is byte-reproducible: the same ``ziglang`` version gives the same bytes from any directory (no debug
info, no paths, custom sections stripped). A different zig version may emit different (equally exact) code,
so the version is pinned here and in the project's dev dependencies.

Exactness flags: ``-ffp-contract=off`` (no fused multiply-add; wasm MVP has none anyway) and
``-fno-fast-math``; ``-mcpu=mvp`` keeps the module to the WebAssembly 1.0 instruction set, so every browser
and runtime since 2017 loads it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "indicators.c"
COMMITTED = HERE / "indicators.wasm"

#: The ziglang wheel the committed indicators.wasm was built with (pin the same in pyproject's dev deps).
ZIGLANG_VERSION = "0.17.1"

FLAGS: tuple[str, ...] = (
    "--target=wasm32-freestanding",
    "-mcpu=mvp",
    "-O2",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-nostdlib",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--no-entry",
    "-Wl,--strip-all",
    "-Wl,-z,stack-size=65536",
)


class BuildError(RuntimeError):
    """The compiler is missing, has the wrong version, or failed."""


def zig_version() -> str | None:
    """The installed ``ziglang`` wheel's version, or None when it is not installed."""
    if importlib.util.find_spec("ziglang") is None:
        return None
    try:
        return metadata.version("ziglang")
    except metadata.PackageNotFoundError:
        return None


def check_compiler() -> None:
    """Raise BuildError unless ``ziglang==ZIGLANG_VERSION`` is importable by this interpreter."""
    version = zig_version()
    if version is None:
        raise BuildError(
            f"the ziglang wheel is not installed for {sys.executable}: "
            f"install it with `{sys.executable} -m pip install ziglang=={ZIGLANG_VERSION}`"
        )
    if version != ZIGLANG_VERSION:
        raise BuildError(
            f"ziglang {version} is installed but indicators.wasm is built with ziglang=={ZIGLANG_VERSION} "
            f"(other versions can emit different bytes): install it with "
            f"`{sys.executable} -m pip install ziglang=={ZIGLANG_VERSION}`, or bump ZIGLANG_VERSION in "
            "wasm/build.py and the dev dependency together and run `make wasm-update`"
        )


def command(output: Path) -> list[str]:
    """The compiler command line that builds ``output``."""
    return [sys.executable, "-m", "ziglang", "cc", *FLAGS, "-o", str(output), str(SOURCE)]


def build(output: Path) -> Path:
    """Compile indicators.c to ``output`` (parent directories are created). Raises BuildError on failure."""
    check_compiler()
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(command(output), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(
            f"compiling {SOURCE} failed (exit {proc.returncode}):\n"
            + (proc.stderr.strip() or proc.stdout.strip())
        )
    output.chmod(0o644)
    return output


def check(committed: Path = COMMITTED) -> str | None:
    """Rebuild in a temp dir and compare with ``committed``: None when identical, else what is wrong."""
    if not committed.exists():
        return f"{committed} does not exist: build it with `make wasm-update` and commit it"
    with tempfile.TemporaryDirectory(prefix="indicators-wasm-") as tmp:
        fresh = build(Path(tmp) / "indicators.wasm").read_bytes()
    old = committed.read_bytes()
    if fresh == old:
        return None
    return (
        f"{committed} differs from a fresh build of {SOURCE} ({len(old)} vs {len(fresh)} bytes): "
        "rebuild with `make wasm-update` and commit wasm/indicators.wasm"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--check", action="store_true", help="byte-compare a fresh build with the committed file"
    )
    mode.add_argument("--update", action="store_true", help=f"rebuild {COMMITTED.name} in place")
    mode.add_argument("--output", type=Path, help="build to this path")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problem = check()
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 1
            print(f"ok: {COMMITTED.name} matches a fresh build (ziglang=={ZIGLANG_VERSION})")
        else:
            out = build(COMMITTED if args.update else args.output)
            print(f"built {out} ({out.stat().st_size} bytes, ziglang=={ZIGLANG_VERSION})")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
