"""The benchmark regression check: ratios only, 20 % tolerance, through the CLI as CI would call it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.runner import BENCHMARKS, check_regression, ratios, regressions, run_benchmark
from streams.cli import app


def test_ratios_are_found_at_any_depth_and_absolute_times_are_ignored() -> None:
    result = {"ema": {"ours_ms": 3.1, "talib_ms": 2.0, "ratio": 1.55}, "update": {"speedup_vs_talipp": 40.0}}
    assert ratios(result) == {"ema.ratio": 1.55, "update.speedup_vs_talipp": 40.0}


def test_a_drop_over_the_tolerance_is_flagged_in_the_right_direction() -> None:
    saved = {"a.speedup_vs_x": 10.0, "b.ratio": 1.0}
    assert regressions(saved, {"a.speedup_vs_x": 8.5, "b.ratio": 1.15}) == []
    worse = regressions(saved, {"a.speedup_vs_x": 7.0, "b.ratio": 1.3})
    assert worse == ["a.speedup_vs_x: 10 -> 7 (-30%)", "b.ratio: 1 -> 1.3 (+30%)"]
    # getting better is never a regression
    assert regressions(saved, {"a.speedup_vs_x": 20.0, "b.ratio": 0.5}) == []


def test_compare_command_exits_1_on_a_regression(tmp_path: Path) -> None:
    saved, new = tmp_path / "saved.json", tmp_path / "new.json"
    saved.write_text(json.dumps({"x": {"speedup": 10.0}}))
    new.write_text(json.dumps({"x": {"speedup": 5.0}}))
    assert check_regression(saved, new) == ["x.speedup: 10 -> 5 (-50%)"]
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "compare", str(saved), str(new)])
    assert bad.exit_code == 1 and "x.speedup" in bad.output
    ok = runner.invoke(app, ["bench", "compare", str(saved), str(saved)])
    assert ok.exit_code == 0, ok.output


def test_every_registered_benchmark_has_a_run_function() -> None:
    import importlib

    for name, module in BENCHMARKS.items():
        assert callable(importlib.import_module(module).run), name
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        run_benchmark("nope", quick=True)
