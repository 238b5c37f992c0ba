"""The end-to-end figures in the README, docs/performance.md and docs/capacity.md are the stored results'
(``bench/results/e2e.json``: the default chained topology; ``e2e_split.json``: the split one, same code,
run back to back). A re-run that changes them fails here until the docs are updated."""

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
    for name in ("e2e.json", "e2e_split.json"):
        text = (ROOT / "bench" / "results" / name).read_text()
        assert "/work/" not in text and "/home/" not in text and "/root/" not in text, name
