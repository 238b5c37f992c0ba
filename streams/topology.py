"""The pipeline's topology: its stages, what each reads, writes and keeps, and how they are grouped into
processes. The one place that names them: the CLI (``stockpulse worker``), the demo, the benchmarks, the
chaos suite, the compose file (checked by a test) and the monitor read it.

Two topologies, chosen by ``STOCKPULSE_TOPOLOGY``:

* ``chained`` (the default): the feed, then one **engine** worker that runs price -> signal -> order in one
  process per partition set, handing each stage's records to the next in memory (no broker hop, no decode
  between them) while still producing every intermediate topic for subscribers and the sink; and the sink.
* ``split``: every stage its own process and consumer group, reading its inputs from the broker.

Both give the same topic contents and stores (tested on the real-data replays).

>>> [p.name for p in processes("chained")]
['feed', 'engine', 'sink']
>>> [p.name for p in processes("split")]
['feed', 'price', 'signal', 'order', 'sink']
>>> process_of("signal", "chained").name, process_of("signal", "split").name
('engine', 'signal')
>>> STAGES["order"].inputs
('signals', 'ticks')
>>> process_named("engine", "split")
Traceback (most recent call last):
...
ValueError: no process 'engine' in the split topology; choose one of feed, price, signal, order, sink ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Topology = Literal["chained", "split"]
TOPOLOGIES: tuple[Topology, ...] = ("chained", "split")


@dataclass(frozen=True, slots=True)
class Stage:
    """One processing step. Topic names are the logical ones (``bars.<tf>``: one per timeframe)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    state: str  # what it keeps per partition (checkpointed with its input offsets)
    latencies: tuple[str, ...] = ()  # the stage-latency series (``stockpulse_stage_latency``) it observes


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("feed", ("ticks.raw",), ("ticks", "deadletter"), "per-symbol sequence numbers"),
        Stage(
            "price",
            ("ticks",),
            ("bars.<tf>", "indicators.<tf>", "deadletter"),
            "open bars and indicator state per symbol and timeframe",
            ("tick_to_bar", "bar_to_indicator"),
        ),
        Stage(
            "signal",
            ("indicators.<tf>",),
            ("signals", "deadletter"),
            "the last action per symbol and timeframe (hysteresis)",
            ("inference", "tick_to_signal"),
        ),
        Stage(
            "order",
            ("signals", "ticks"),
            ("orders", "fills", "deadletter"),
            "books per symbol and signal timeframe: pending signals, positions, recent ticks",
            ("tick_to_order",),
        ),
        Stage(
            "sink",
            ("ticks", "bars.<tf>", "indicators.<tf>", "signals", "orders", "fills"),
            ("redis", "clickhouse", "postgresql", "deadletter"),
            "records buffered since the last durable write",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Process:
    """One process of a topology: the stages it runs, in order, and how it is started."""

    name: str
    stages: tuple[str, ...]

    @property
    def command(self) -> tuple[str, ...]:
        """The ``stockpulse`` arguments that start it."""
        return ("feed",) if self.name == "feed" else ("worker", self.name)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The topics the process consumes: its stages' inputs not produced by an earlier stage in it."""
        made: set[str] = set()
        out: list[str] = []
        for name in self.stages:
            stage = STAGES[name]
            out += [t for t in stage.inputs if t not in made and t not in out]
            made.update(stage.outputs)
        return tuple(out)


_LAYOUT: dict[Topology, tuple[Process, ...]] = {
    "chained": (
        Process("feed", ("feed",)),
        Process("engine", ("price", "signal", "order")),
        Process("sink", ("sink",)),
    ),
    "split": tuple(Process(name, (name,)) for name in STAGES),
}


def processes(topology: Topology) -> tuple[Process, ...]:
    """The processes of a topology, upstream first."""
    return _LAYOUT[topology]


def workers(topology: Topology) -> tuple[str, ...]:
    """The names ``stockpulse worker NAME`` accepts in a topology (every process but the feed)."""
    return tuple(p.name for p in processes(topology) if p.name != "feed")


def process_named(name: str, topology: Topology) -> Process:
    for p in processes(topology):
        if p.name == name:
            return p
    names = ", ".join(p.name for p in processes(topology))
    raise ValueError(
        f"no process {name!r} in the {topology} topology; choose one of {names} (or set "
        "STOCKPULSE_TOPOLOGY=chained|split)"
    )


def process_of(stage: str, topology: Topology) -> Process:
    """The process that runs a stage."""
    return next(p for p in processes(topology) if stage in p.stages)
