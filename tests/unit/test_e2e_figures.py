"""The end-to-end figures in the README, docs/performance.md and docs/capacity.md are the stored results'
(``bench/results/e2e.json``: the default chained topology; ``e2e_split.json``: the split one, same code,
run back to back; ``e2e_scale.json``: one and two processes of every worker; ``soak.json``: the soak). A
re-run that changes them fails here until the docs are updated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = {name: (ROOT / name).read_text() for name in ("README.md", "docs/performance.md")}


def _result(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "bench" / "results" / name).read_text())


def _figures(result: dict[str, Any]) -> list[str]:
    t = result["throughput"]
    out = [f"{t[k]['ticks_per_s']:,}" for k in ("single_tick", "tick_batch", "baseline")]
    for r in result["latency"]:
        sig = r["tick_to_signal_ms"]
        out.append(f"{round(sig['p50']):,} / {round(sig['p99']):,}")
    return out


@pytest.mark.parametrize("doc", sorted(DOCS))
@pytest.mark.parametrize("name", ["e2e.json", "e2e_split.json"])
def test_the_docs_quote_the_stored_end_to_end_results(doc: str, name: str) -> None:
    result = _result(name)
    assert result["config"]["topology"] == ("split" if "split" in name else "chained")
    missing = [f for f in _figures(result) if f not in DOCS[doc]]
    assert missing == [], f"{doc} does not quote {missing} from bench/results/{name}"


def test_stored_results_carry_no_machine_paths() -> None:
    for name in ("e2e.json", "e2e_split.json", "e2e_scale.json", "soak.json"):
        text = (ROOT / "bench" / "results" / name).read_text()
        assert "/work/" not in text and "/home/" not in text and "/root/" not in text, name


def test_the_readme_quotes_the_stored_scale_out_and_soak_results() -> None:
    scale = _result("e2e_scale.json")
    for w, r in scale["workers"].items():
        row = f"| {w} | {r['tick_batch_ticks_per_s']:,} | {r['single_tick_ticks_per_s']:,} |"
        assert row in DOCS["README.md"], f"README has no scale-out row {row!r} (bench/results/e2e_scale.json)"
    from bench.soak import table

    soak = _result("soak.json")
    assert table(soak) in DOCS["README.md"], "README's soak table is not bench/results/soak.json's"
