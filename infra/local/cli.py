"""``stockpulse stack ...``: run the local stack (Kafka-protocol broker, Redis Cluster, PostgreSQL with a
replica, ClickHouse over HTTP, Triton) as local processes under ``.stack/``."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infra.local import stack
from infra.local.errors import StackError
from infra.local.service import ServiceStatus
from streams.config import Settings

app = typer.Typer(help=__doc__, no_args_is_help=True)
# Outside a terminal (CI logs, pipes) rich would wrap at 80 columns: the table reads better wider.
console = Console(emoji=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, emoji=False, width=None if sys.stderr.isatty() else 160)


def _fail(ex: StackError) -> typer.Exit:
    err_console.print(Text.assemble(("error: ", "bold red"), ex.problem))
    err_console.print(Text.assemble(("fix: ", "bold"), ex.fix))
    return typer.Exit(code=1)


def status_table(rows: list[ServiceStatus], extra: dict[str, str] | None = None) -> Table:
    table = Table(title="StockPulse local stack")
    for column in ("service", "address", "healthy", "version", "detail"):
        table.add_column(column)
    for row in rows:
        healthy = "[green]yes[/]" if row.healthy else "[red]NO[/]"
        detail = row.detail if extra is None else f"{extra.get(row.service, '')} {row.detail}".strip()
        table.add_row(row.service, row.address, healthy, row.version, detail)
    return table


@app.command()
def up(
    service: Annotated[list[str] | None, typer.Argument(help="services to start (default: all)")] = None,
) -> None:
    """Start the stack (installs what is missing); a no-op for services already healthy."""
    began = time.monotonic()
    settings = Settings()
    try:
        results = stack.up(settings, service or None)
    except StackError as ex:
        raise _fail(ex) from None
    extra = {
        r.status.service: (f"started in {r.seconds:.1f}s" if r.started else "already up") for r in results
    }
    console.print(status_table([r.status for r in results], extra))
    console.print(f"stack up in {time.monotonic() - began:.1f}s; data and logs in {settings.stack.dir}")


@app.command()
def down(
    service: Annotated[list[str] | None, typer.Argument(help="services to stop (default: all)")] = None,
) -> None:
    """Stop the stack and check that no process of it is left (data is kept)."""
    began = time.monotonic()
    try:
        stopped = stack.down(Settings(), service or None)
    except StackError as ex:
        raise _fail(ex) from None
    what = ", ".join(stopped) if stopped else "nothing was running"
    console.print(f"stopped: {what} ({time.monotonic() - began:.1f}s)")


@app.command()
def status(
    service: Annotated[list[str] | None, typer.Argument(help="services to check (default: all)")] = None,
) -> None:
    """Check every service over a real connection; exits 1 when any is unhealthy."""
    try:
        rows = stack.status(Settings(), service or None)
    except StackError as ex:
        raise _fail(ex) from None
    console.print(status_table(rows))
    if not all(r.healthy for r in rows):
        raise typer.Exit(code=1)


@app.command()
def logs(
    service: Annotated[
        str | None, typer.Argument(help="broker, redis, postgres, clickhouse or triton")
    ] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="lines per log")] = 50,
) -> None:
    """Print the last lines of the logs of a service (or of all of them)."""
    try:
        found = stack.logs(Settings(), service, lines)
    except StackError as ex:
        raise _fail(ex) from None
    for process, text in found.items():
        console.rule(process)
        console.print("\n".join(text) if text else "(no log yet)", markup=False, highlight=False)


if __name__ == "__main__":
    app()
