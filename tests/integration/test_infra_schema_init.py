"""The compose ``schema-init`` job, run for real.

``sinks/clickhouse/schema.sql`` is a template (``${ticks_ttl}``) with unqualified names, so it cannot
be a ClickHouse initdb script; compose applies it with a one-shot ``schema-init`` service that runs
the project's own code (``ClickHouseHistory.open``). This test takes that service's command and
environment from the resolved compose file and runs them against a private ClickHouse-compatible
server (``infra.local.clickhouse_server`` over a temporary chdb directory, on a free port; the local
stack is not touched): the tables must land in ``stockpulse`` with the configured tick TTL, and a
second run must be a no-op apart from bringing the TTL in line with the settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_infra import COMPOSE_FILE, REPO, _compose_binary, _compose_env, _run

HISTORY_TABLES = {"ticks", "bars", "indicators", "signals"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def clickhouse_url(tmp_path: Path) -> Iterator[str]:
    """A private ClickHouse HTTP server (chdb) for this test only, stopped afterwards."""
    pytest.importorskip("chdb", reason="chdb (clickhouse-connect[chdb]) is needed for a private ClickHouse")
    port = _free_port()
    log = (tmp_path / "clickhouse.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.clickhouse_server",
            "--path",
            str(tmp_path / "ch"),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                logged = (tmp_path / "clickhouse.log").read_text()
                pytest.fail(f"the private ClickHouse server did not start:\n{logged}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _schema_init_service() -> dict[str, Any]:
    import json

    binary = _compose_binary()
    out = _run(
        [str(binary), "-f", str(COMPOSE_FILE), "config", "--format", "json"], REPO, _compose_env(), timeout=60
    )
    service: dict[str, Any] = json.loads(out)["services"]["schema-init"]
    return service


def _run_schema_init(service: dict[str, Any], cwd: Path, **overrides: str) -> str:
    entrypoint = list(service["entrypoint"])
    assert entrypoint[0] == "python", entrypoint
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update({k: v for k, v in service["environment"].items() if v is not None})
    env.update(overrides)
    proc = subprocess.run(
        [sys.executable, *entrypoint[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"schema-init exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _ticks_engine(client: Any) -> str:
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = 'stockpulse' AND name = 'ticks'"
    ).result_rows
    engine: str = rows[0][0]
    return engine


def test_schema_init_applies_the_schema_in_the_stockpulse_database(
    clickhouse_url: str, tmp_path: Path
) -> None:
    import clickhouse_connect

    service = _schema_init_service()
    assert service["environment"]["STOCKPULSE_CLICKHOUSE__DATABASE"] == "stockpulse"
    out = _run_schema_init(service, tmp_path, STOCKPULSE_CLICKHOUSE__URL=clickhouse_url)
    assert "schema-init:" in out and "database stockpulse" in out, out

    host, port = clickhouse_url.removeprefix("http://").split(":")
    client = clickhouse_connect.get_client(host=host, port=int(port), username="default", password="")
    try:
        tables = {
            (db, name)
            for db, name in client.query(
                "SELECT database, name FROM system.tables WHERE database IN ('stockpulse', 'default')"
            ).result_rows
        }
        in_stockpulse = {name for db, name in tables if db == "stockpulse"}
        assert in_stockpulse >= HISTORY_TABLES, sorted(tables)
        assert not {name for db, name in tables if db == "default"} & in_stockpulse, sorted(tables)
        # ${ticks_ttl} was filled in from the settings (default 90 days), not left as text.
        assert "toIntervalDay(90)" in _ticks_engine(client) or "INTERVAL 90 DAY" in _ticks_engine(client)

        # Idempotent, and the TTL follows STOCKPULSE_SINK__TICKS_TTL_DAYS on the next run.
        _run_schema_init(
            service, tmp_path, STOCKPULSE_CLICKHOUSE__URL=clickhouse_url, STOCKPULSE_SINK__TICKS_TTL_DAYS="30"
        )
        engine = _ticks_engine(client)
        assert "toIntervalDay(30)" in engine or "INTERVAL 30 DAY" in engine, engine
    finally:
        client.close()
