"""The local ClickHouse HTTP server keeps per-query settings per query: a client that asks for
``readonly=1`` must not leave a pooled connection read-only for everybody after it (regression test)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.integration.test_infra_schema_init import clickhouse_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def _post(url: str, sql: str, **params: str) -> tuple[int, str]:
    query = urllib.parse.urlencode(params)
    req = urllib.request.Request(f"{url}/?{query}", data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_readonly_of_one_query_does_not_stick_to_the_pool(clickhouse_url: str) -> None:  # noqa: F811
    assert _post(clickhouse_url, "CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")[0] == 200
    for _ in range(5):  # every pooled connection gets a read-only query at some point
        status, body = _post(clickhouse_url, "SELECT count() FROM t", readonly="1")
        assert status == 200, body
    status, body = _post(clickhouse_url, "INSERT INTO t VALUES (1), (2)", readonly="1")
    assert status != 200 and "READONLY" in body, "readonly=1 applies to the query that asked for it"
    for i in range(10):  # ... and to no later query
        status, body = _post(clickhouse_url, f"INSERT INTO t VALUES ({i})")
        assert status == 200, f"a write after read-only queries failed: {body}"
    assert _post(clickhouse_url, "SELECT count() FROM t")[1].strip() == "10"
