"""The ``stockpulse`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streams.apps.checkpointing import PartitionCountError, StaleCheckpointError
from streams.checkpoint_cli import app as checkpoints_app
from streams.config import Settings, get_settings
from streams.rollups_cli import app as rollups_app

app = typer.Typer(
    help="StockPulse Stream: market data -> bars -> indicators -> ML signals -> orders.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
topics_app = typer.Typer(help="Kafka topics of the pipeline.", no_args_is_help=True)
schemas_app = typer.Typer(help="Avro schemas and their id catalog.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
bench_app = typer.Typer(
    help="Benchmarks, each against a baseline measured in the same run.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(rollups_app, name="rollups")
console = Console(width=None if sys.stdout.isatty() else 120)


def _add_stack_app() -> None:
    try:
        from infra.local.cli import app as stack_app
    except ImportError as exc:  # pragma: no cover - only when the package is broken
        console.print(f"[red]stack commands unavailable: {exc}[/red]")
        return
    app.add_typer(
        stack_app, name="stack", help="The local stack: broker, Redis, PostgreSQL, Triton, ClickHouse."
    )


_add_stack_app()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _logging() -> None:
    level = get_settings().log_level.upper()
    logging.basicConfig(
        level="WARNING" if level == "WARN" else level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic with its final partition count (idempotent)."""
    from streams.kafka import BrokerError, create_topics

    try:
        result = create_topics(get_settings())
    except BrokerError as exc:
        _fail(str(exc))
    table = Table("topic", "partitions", "result")
    wanted = get_settings().topics.all_topics()
    for topic, status in sorted(result.items()):
        table.add_row(topic, str(wanted[topic]), status)
    console.print(table)


@topics_app.command("list")
def topics_list() -> None:
    """List the broker's topics and partition counts."""
    from streams.kafka import BrokerError, list_topics

    try:
        topics = list_topics(get_settings())
    except BrokerError as exc:
        _fail(str(exc))
    table = Table("topic", "partitions")
    for name, parts in sorted(topics.items()):
        table.add_row(name, str(parts))
    console.print(table)


@schemas_app.command("register")
def schemas_register() -> None:
    """Add a catalog version for each new or changed .avsc (refuses incompatible changes)."""
    from schemas.catalog import SchemaError, register_changes

    try:
        added = register_changes()
    except SchemaError as exc:
        _fail(str(exc))
    console.print("\n".join(added) if added else "catalog up to date")


@schemas_app.command("check")
def schemas_check() -> None:
    """Exit non-zero when an .avsc differs from the catalog."""
    from schemas.serde import check_catalog_matches_files

    stale = check_catalog_matches_files()
    if stale:
        _fail(f"schemas changed without a catalog version: {stale}; run `stockpulse schemas register`")
    console.print("catalog matches the .avsc files")


@app.command()
def feed(
    idle_exit: float = typer.Option(None, help="Exit after this many seconds without input (tests, demos)."),
) -> None:
    """Run the feed handler: ticks.raw -> validate -> TickBatch -> ticks (dead letters with reasons)."""
    from streams.feed import FeedHandler
    from streams.metrics import serve_metrics

    _logging()
    settings = get_settings()
    _check_topics(settings)
    serve_metrics(settings.metrics_port)
    try:
        stats = FeedHandler(settings).run(idle_exit_s=idle_exit)
    except (ConnectionError, StaleCheckpointError) as exc:
        _fail(str(exc))
    console.print(
        f"feed: consumed {stats.consumed}, valid {stats.valid}, dead-lettered {stats.dead_lettered} "
        f"{stats.by_reason or ''}, batches {stats.batches}"
    )


def _check_topics(settings: Settings) -> None:
    """Refuse to start on topics whose partition counts disagree with the settings."""
    from streams.kafka import BrokerError, check_partitions

    try:
        check_partitions(settings)
    except BrokerError as exc:
        _fail(str(exc))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        speed = -1.0
    if speed <= 0:
        _fail(f"--speed {value!r}: give a positive number (1 = real time) or 'max'")
    return speed


@app.command()
def replay(
    file: Path = typer.Argument(
        ..., help="A recording from ../shared/data (quotes CSV, trades parquet, 1m bars CSV)."
    ),
    symbol: str = typer.Option(None, help="Symbol to publish as (default: from the file name)."),
    speed: str = typer.Option(
        "max", help="Event-time speed: 1 = real time, 60 = a minute per second, or max."
    ),
    fmt: str = typer.Option("avro", "--format", help="avro (Confluent wire format) or json."),
    copies: int = typer.Option(
        1, min=1, help="Replay as this many symbols (SYMBOL.1, SYMBOL.2, ...) to scale up."
    ),
    end: bool = typer.Option(
        True,
        "--end/--no-end",
        help="At the end, send EndOfStream for the replayed symbols so their last bars close (--no-end: "
        "more input follows, e.g. another file of the same symbols).",
    ),
) -> None:
    """Replay a real recording into ticks.raw."""
    from streams.sources.producer import TickProducer
    from streams.sources.recordings import RecordingError, load_recording

    try:
        rec = load_recording(file, symbol)
    except RecordingError as exc:
        _fail(str(exc))
    names = [rec.symbol] if copies == 1 else [f"{rec.symbol}.{i + 1}" for i in range(copies)]
    n = len(rec)
    idx = np.repeat(np.arange(copies, dtype=np.int32), n).reshape(copies, n).T.ravel()
    ts = np.repeat(rec.ts_us, copies)
    price = np.repeat(rec.price, copies)
    size = np.repeat(rec.size, copies)
    producer = TickProducer(get_settings(), fmt)
    with _progress() as bar:
        task = bar.add_task(f"replay {file.name}", total=len(ts))
        result = producer.send(names, idx, ts, price, size, _speed(speed), lambda k: bar.advance(task, k))
    if end:
        producer.end_of_stream(names)
    console.print(
        f"sent {result.sent} ticks for {len(names)} symbol(s) in {result.seconds:.2f}s ({result.rate:,.0f}/s)"
        + ("; end of stream sent: their last bars close now" if end else "")
    )


@app.command()
def simulate(
    symbols: int = typer.Option(10, min=1),
    rate: float = typer.Option(1000.0, min=1, help="Ticks per second in total."),
    seconds: float = typer.Option(10.0, min=0.01, help="Seconds of event time."),
    seed: int = typer.Option(1),
    speed: str = typer.Option("1", help="1 = real time (the given rate), or max."),
    fmt: str = typer.Option("avro", "--format", help="avro or json."),
) -> None:
    """Simulate a seeded market (GBM + microstructure noise + bursts) into ticks.raw."""
    from processors.simulate import simulate as run_simulation
    from streams.sources.producer import TickProducer

    sim = run_simulation(symbols, rate, seconds, seed)
    producer = TickProducer(get_settings(), fmt)
    with _progress() as bar:
        task = bar.add_task("simulate", total=len(sim.ts_us))
        result = producer.send(
            sim.symbols,
            sim.symbol_index,
            sim.ts_us,
            sim.price,
            sim.size,
            _speed(speed),
            lambda k: bar.advance(task, k),
        )
    console.print(
        f"sent {result.sent} ticks for {symbols} symbols in {result.seconds:.2f}s ({result.rate:,.0f}/s)"
    )


@app.command()
def worker(
    service: str = typer.Argument(
        ...,
        help="Worker to run: engine or sink (STOCKPULSE_TOPOLOGY=chained, the default); price, signal, "
        "order or sink (split).",
    ),
) -> None:
    """Run a Faust stream-processing worker of the topology (its own app and consumer group)."""
    from streams.services import run_service
    from streams.topology import workers

    settings = get_settings()
    if service not in workers(settings.topology):
        _fail(
            f"unknown worker {service!r} in the {settings.topology} topology; choose one of "
            f"{', '.join(workers(settings.topology))} (or set STOCKPULSE_TOPOLOGY=chained|split)"
        )
    _logging()
    _check_topics(settings)
    try:
        run_service(service)
    except PartitionCountError as exc:
        _fail(str(exc))


@app.command()
def sql(
    query: str = typer.Argument(None, help="SQL to run (or use --file)."),
    file: Path = typer.Option(None, "--file", "-f", help="A .sql file of ;-separated statements."),
    database: str = typer.Option(None, help="Database (default STOCKPULSE_CLICKHOUSE__DATABASE)."),
    fmt: str = typer.Option("table", "--format", help="table, csv, tsv or json (JSON lines)."),
    write: bool = typer.Option(False, "--write", help="Allow statements that change data (off: readonly)."),
) -> None:
    """Query the ClickHouse history while the pipeline runs (through the process owning the engine)."""
    from rich.table import Table

    from streams import sql as sql_mod

    if (query is None) == (file is None):
        _fail("give a query or --file FILE (one of them), e.g. stockpulse sql 'SELECT count() FROM ticks'")
    if fmt not in ("table", "csv", "tsv", "json"):
        _fail(f"--format {fmt!r}: use table, csv, tsv or json")
    text = query if file is None else file.read_text()
    statements = sql_mod.split_statements(text)
    if not statements:
        _fail("no SQL statement found in the input")
    try:
        results = sql_mod.run(get_settings(), statements, database, write)
    except sql_mod.SqlError as exc:
        _fail(str(exc))
    for result in results:
        if fmt != "table":
            typer.echo(sql_mod.render(result, fmt))  # type: ignore[arg-type]
            continue
        table = Table(*result.columns, title=result.statement[:100] if len(results) > 1 else None)
        for row in result.rows:
            table.add_row(*(str(v) for v in row))
        console.print(table)
        console.print(f"{len(result.rows)} row(s)")


@app.command("kill-switch")
def kill_switch(
    action: str = typer.Argument("status", help="on, off or status"),
    reason: str = typer.Option("", help="Why (shown in every rejected order's reason)."),
) -> None:
    """The global kill switch: `on` makes every order process (and the API) reject new orders."""
    import asyncio

    from sinks.base import SinkError
    from streams.stores import redis_state

    if action not in ("on", "off", "status"):
        _fail(f"kill-switch {action!r}: use on, off or status")

    async def run() -> str | None:
        state = await redis_state(get_settings()).open()
        try:
            if action != "status":
                await state.set_kill_switch(None if action == "off" else (reason or "engaged by hand"))
            return await state.kill_switch()
        finally:
            await state.close()

    try:
        current = asyncio.run(run())
    except SinkError as exc:
        _fail(str(exc))
    console.print(f"kill switch {'ENGAGED: ' + current if current is not None else 'off'}")


@app.command()
def monitor(
    seconds: float = typer.Option(None, help="Stop after this many seconds (default: run until stopped)."),
) -> None:
    """Watch every service's /metrics for performance anomalies; publish PerfAlerts to perf.alerts."""
    from streams.metrics import serve_metrics
    from streams.monitor import AlertPublisher, Monitor

    _logging()
    settings = get_settings()
    publisher = AlertPublisher(settings)
    try:
        mon = Monitor(settings, publish=publisher)
    except ValueError as exc:
        _fail(str(exc))
    serve_metrics(settings.metrics_port)
    try:
        mon.run(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.flush()
        mon.close()


@app.command()
def top(
    seconds: float = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C)."),
) -> None:
    """A live view of every service: ticks/s, stage p50/p99, inference path, cache, errors, alerts."""
    from streams.top import run_top

    try:
        run_top(get_settings(), seconds)
    except ValueError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


@app.command()
def api(
    host: str = typer.Option(None, help="Listen address (default STOCKPULSE_API__HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default STOCKPULSE_API__PORT, 8080)."),
    workers: int = typer.Option(None, help="uvicorn worker processes (default STOCKPULSE_API__WORKERS)."),
) -> None:
    """Serve the query API, the live WebSocket stream and the dashboard (FastAPI + uvicorn)."""
    from streams.api.server import serve

    serve(get_settings(), host, port, workers)


@app.command()
def demo(
    files: list[Path] = typer.Option(
        None, "--file", help="Recordings to replay (default: the quote and trade files)."
    ),
    timeout: float = typer.Option(120.0, help="Give up waiting for the pipeline after this many seconds."),
) -> None:
    """Run the pipeline on the local stack with real data and print a summary."""
    from streams.demo import run_demo

    code = run_demo(get_settings(), files or None, timeout, console)
    raise typer.Exit(code)


def _bench(name: str, quick: bool) -> None:
    from bench.runner import run_benchmark

    result = run_benchmark(name, quick)
    table = result.get("table") or result.get("markdown")
    if not table:
        try:
            import importlib

            table = importlib.import_module(f"bench.{name}").markdown(result)
        except (AttributeError, ImportError, KeyError, TypeError):
            table = None
    console.print(table if table else result)


def _bench_command(name: str) -> None:
    def command(quick: bool = typer.Option(False, "--quick", help="Smaller inputs (a smoke run).")) -> None:
        _bench(name, quick)

    command.__doc__ = f"Run the {name} benchmark; JSON to bench/results/{name}.json."
    bench_app.command(name)(command)


def _register_benchmarks() -> None:
    from bench.runner import BENCHMARKS

    for name in BENCHMARKS:
        _bench_command(name)


_register_benchmarks()


@bench_app.command("all")
def bench_all(
    quick: bool = typer.Option(False, "--quick", help="Smaller inputs: all in about 2 minutes."),
) -> None:
    """Run every benchmark (see `stockpulse bench --help`), each writing its JSON to bench/results/."""
    from bench.runner import BENCHMARKS

    for name in BENCHMARKS:
        console.rule(f"bench {name}")
        _bench(name, quick)


@bench_app.command("soak")
def bench_soak(
    minutes: float = typer.Option(60.0, help="How long to run."),
    rate: float = typer.Option(5000.0, help="Input ticks per second (one tick per message)."),
) -> None:
    """Steady input for MINUTES: RSS, lag (our own offsets) and latency over time; fails on growth, on a
    lag above 10 s of input, or on a p99 tick -> signal latency that doubles."""
    from bench.soak import SoakConfig, run_soak

    result = run_soak(SoakConfig(minutes=minutes, rate=rate))
    console.print(result["analysis"])
    if not result["analysis"]["passed"]:
        raise typer.Exit(1)


@bench_app.command("compare")
def bench_compare(
    saved: Path = typer.Argument(..., help="A saved result JSON (e.g. from main)."),
    new: Path = typer.Argument(..., help="The new result JSON."),
    tolerance: float = typer.Option(0.2, help="Flag ratio drops larger than this (0.2 = 20%)."),
) -> None:
    """Compare the same-run ratios of two results; exit 1 if any dropped by more than the tolerance."""
    from bench.runner import check_regression

    found = check_regression(saved, new, tolerance)
    for line in found:
        console.print(f"[red]regression[/red] {line}")
    if found:
        raise typer.Exit(1)
    console.print("no ratio dropped by more than " + f"{tolerance:.0%}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
