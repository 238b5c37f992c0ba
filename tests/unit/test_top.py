"""``stockpulse top``'s view and the monitor's configuration errors (no servers needed)."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from streams.cli import app
from streams.config import MonitorSettings, Settings
from streams.monitor import Monitor, Step
from streams.top import render


def test_the_view_shows_services_stages_health_and_alerts() -> None:
    step = Step(
        ts=0.0,
        metrics={"price_ticks_per_s": 12345.0, "tick_to_bar_p50_ms": 1.5, "tick_to_bar_p99_ms": 7.25,
                 "fallback_ratio": 1.0, "cache_hit_ratio": 0.93, "errors_per_s": 0.5},
        unreachable={"sink": "URLError: refused"},
        alerts=[],
        lags={("engine", "ticks", "0"): 40.0, ("engine", "ticks", "7"): 2300.0,
              ("sink", "bars.1m", "1"): 0.0},
    )  # fmt: skip
    console = Console(record=True, width=140)
    console.print(render(step, ["price", "sink"], ["12:00:00 [critical] fallback_ratio is 1"]))
    text = console.export_text()
    for want in (
        "12,345",
        "1.50 ms",
        "7.25 ms",
        "fallback (100.0%)",
        "93.0%",
        "0.50/s",
        "down",
        "critical",
        "2,340",
        "2,300 (p7)",
        "bars.1m",
    ):
        assert want in text, (want, text)


def test_monitor_without_targets_says_how_to_configure_them() -> None:
    with pytest.raises(ValueError, match="STOCKPULSE_MONITOR__TARGETS"):
        Monitor(Settings())
    with pytest.raises(ValueError, match="use service=http://host:port/metrics"):
        MonitorSettings(targets="price=localhost:9100").target_map()
    assert MonitorSettings(targets="a=http://x:1/metrics, b=http://y:2/metrics").target_map() == {
        "a": "http://x:1/metrics",
        "b": "http://y:2/metrics",
    }
    result = CliRunner().invoke(app, ["top", "--seconds", "1"], env={"STOCKPULSE_MONITOR__TARGETS": ""})
    assert result.exit_code == 2 and "STOCKPULSE_MONITOR__TARGETS" in result.output
