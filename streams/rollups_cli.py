"""``stockpulse rollups``: repair the tick rollups (``ohlcv_1m/1h/1d``) of a day from one copy of each tick.

The sink drops re-delivered ticks before they reach ClickHouse (:func:`processors.ticks.after_seq`), so the
rollups stay exact through crashes and rebalances; this command repairs a day written by anything else
(a hand-made insert, an older version)."""

from __future__ import annotations

import asyncio
import datetime as dt

import typer
from rich.console import Console

from sinks.base import SinkError
from streams.config import get_settings
from streams.stores import clickhouse_history

app = typer.Typer(help="The OHLCV rollups of ticks in ClickHouse.", no_args_is_help=True)
console = Console()


@app.command("rebuild")
def rebuild(
    day: str = typer.Option(..., help="The UTC day to rebuild, YYYY-MM-DD (a finished day)."),
) -> None:
    """Recompute ohlcv_1m/1h/1d of DAY from ticks FINAL (one copy of each tick)."""
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        console.print(f"[red]error:[/red] --day {day!r}: give a date as YYYY-MM-DD, e.g. 2026-12-03")
        raise typer.Exit(2) from None

    async def run() -> int:
        history = clickhouse_history(get_settings())
        await history.open()
        try:
            return await history.rebuild_rollups(when)
        finally:
            await history.close()

    try:
        n = asyncio.run(run())
    except SinkError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"rollups of {when} rebuilt from {n:,} ticks")
