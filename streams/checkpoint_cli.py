"""``stockpulse checkpoints``: list the services' checkpoints, and reset those that point into another log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from sinks.checkpoints import CheckpointStore
from streams.config import get_settings

app = typer.Typer(
    help="The services' checkpoints (state + next offsets) in PostgreSQL.", no_args_is_help=True
)
console = Console()
T = TypeVar("T")


async def _with_store(call: Callable[[CheckpointStore], Awaitable[T]]) -> T:
    store = await CheckpointStore(get_settings().postgres.dsn.get_secret_value(), retry_for_s=5).open()
    try:
        return await call(store)
    finally:
        await store.close()


@app.command("list")
def list_checkpoints(group: str = typer.Option("", help="Only this consumer group.")) -> None:
    """Every checkpoint row: group, topic, partition, next offset and the id of the log it points into."""
    rows = asyncio.run(_with_store(lambda store: store.groups()))
    table = Table("group", "topic", "partition", "next offset", "log id")
    for g, topic, part, offset, log_id in rows:
        if not group or g == group:
            table.add_row(g, topic, str(part), str(offset), log_id or "(unknown)")
    console.print(table)


@app.command("reset")
def reset(
    group: str = typer.Option(..., help="The consumer group (a service's group, e.g. stockpulse-engine)."),
    topic: str = typer.Option(None, help="Only this topic (default: all of the group's)."),
    partitions: str = typer.Option(None, help="Only these partitions, comma-separated (e.g. 0,3)."),
) -> None:
    """Point checkpoints at the start of the log there now (a topic re-created, a broker that lost its
    storage): the service re-reads those partitions from offset 0 and keeps its state (sequence numbers go
    on). Stop the service first."""
    parts = None
    if partitions:
        try:
            parts = [int(p) for p in partitions.split(",") if p.strip()]
        except ValueError:
            console.print(
                f"[red]error:[/red] --partitions {partitions!r}: give numbers separated by commas, e.g. 0,3"
            )
            raise typer.Exit(2) from None
    n = asyncio.run(_with_store(lambda store: store.reset(group, topic, parts)))
    console.print(f"reset {n} checkpoint(s) of group {group}" + (f", topic {topic}" if topic else ""))
