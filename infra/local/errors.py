"""Errors raised by the local stack: each names what went wrong and how to fix it."""

from __future__ import annotations


class StackError(Exception):
    """A local-stack failure with a message meant for the user (what was wrong, then the fix)."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}")


class MissingDependencyError(StackError):
    """A package, binary or OS user the stack needs is not there and could not be installed."""


class ChecksumMismatchError(StackError):
    """A pinned binary's sha256 is not the one the stack was written for."""


class PortInUseError(StackError):
    """A port the stack needs is held by a process that is not part of the stack."""


class ServiceStartError(StackError):
    """A service was started but did not become healthy in time, or exited."""
