"""The local stack over real connections: broker, Redis Cluster, PostgreSQL + replica, Triton, ClickHouse."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest

from infra.local import stack
from streams.config import Settings

pytestmark = pytest.mark.integration


def test_status_all_healthy(stack_settings: Settings) -> None:
    rows = stack.status(stack_settings)
    assert {r.service for r in rows} == {"broker", "redis", "postgres", "clickhouse", "triton"}
    assert all(r.healthy for r in rows), rows
    assert all(r.version for r in rows), rows


def test_second_up_is_a_noop(stack_settings: Settings) -> None:
    began = time.monotonic()
    results = stack.up(stack_settings)
    assert not any(r.started for r in results)
    assert time.monotonic() - began < 10


def test_broker_produce_consume(stack_settings: Settings) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = f"{stack_settings.stack.host}:{stack_settings.stack.broker_port}"
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=b"hello stack")
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        message = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert (message.key(), message.value()) == (b"k", b"hello stack")
    finally:
        consumer.close()
        admin.delete_topics([topic])


def test_redis_cluster_set_get_across_slots(stack_settings: Settings) -> None:
    from redis.cluster import ClusterNode, RedisCluster

    base = stack_settings.stack.redis_base_port
    nodes = [ClusterNode(stack_settings.stack.host, base + i) for i in range(3)]
    client = RedisCluster(startup_nodes=nodes, socket_timeout=5)
    try:
        keys = {f"stack-test:{uuid.uuid4().hex}:{i}": str(i) for i in range(200)}
        for key, value in keys.items():
            client.set(key, value, ex=60)
        assert {key: client.get(key) for key in keys} == {k: v.encode() for k, v in keys.items()}
        owners = {client.get_node_from_key(key).port for key in keys}
        assert len(owners) == 3  # the keys landed on every primary
        assert len(client.get_replicas()) == 3
    finally:
        client.close()


def test_postgres_write_primary_read_replica(stack_settings: Settings) -> None:
    import asyncpg

    marker = uuid.uuid4().hex

    async def scenario() -> None:
        primary = await asyncpg.connect(stack_settings.postgres.dsn.get_secret_value())
        replica = await asyncpg.connect(stack_settings.postgres.replica_dsn.get_secret_value())
        try:
            await primary.execute(
                "CREATE TABLE IF NOT EXISTS stack_test (marker text PRIMARY KEY, at timestamptz)"
            )
            await primary.execute("INSERT INTO stack_test VALUES ($1, now())", marker)
            assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
            deadline = time.monotonic() + 10
            found = None
            while time.monotonic() < deadline:
                found = await replica.fetchval("SELECT marker FROM stack_test WHERE marker = $1", marker)
                if found:
                    break
                await asyncio.sleep(0.05)
            assert found == marker
            with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
                await replica.execute("INSERT INTO stack_test VALUES ('x', now())")
            await primary.execute("DELETE FROM stack_test WHERE marker = $1", marker)
        finally:
            await primary.close()
            await replica.close()

    asyncio.run(scenario())


def test_triton_health_model_grpc(stack_settings: Settings) -> None:
    import tritonclient.grpc as grpcclient

    url = f"{stack_settings.stack.host}:{stack_settings.stack.triton_grpc_port}"
    client = grpcclient.InferenceServerClient(url)
    assert client.is_server_live() and client.is_model_ready("health")
    data = np.arange(5, dtype=np.float32)
    inp = grpcclient.InferInput("INPUT", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    result = client.infer("health", [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), data)


@pytest.mark.parametrize("compress", [True, False], ids=["lz4", "plain"])
def test_clickhouse_over_http(stack_settings: Settings, compress: bool) -> None:
    import clickhouse_connect

    client = clickhouse_connect.get_client(
        host=stack_settings.stack.host,
        port=stack_settings.stack.clickhouse_http_port,
        interface="http",
        database=stack_settings.clickhouse.database,
        compress=compress,
    )
    table = f"stack_test_{uuid.uuid4().hex[:8]}"
    try:
        client.command(
            f"CREATE TABLE {table} (ts DateTime64(6, 'UTC'), symbol LowCardinality(String), price Float64, "
            "qty UInt32, tags Array(String), note Nullable(String)) ENGINE = MergeTree ORDER BY (symbol, ts)"
        )
        rows = [
            (1_700_000_000 + i, f"S{i % 7}", 100.0 + i / 10, i, ["a"] * (i % 3), None if i % 2 else f"n{i}")
            for i in range(5000)
        ]
        summary = client.insert(table, rows, column_names=["ts", "symbol", "price", "qty", "tags", "note"])
        assert summary.written_rows == 5000
        assert client.query(f"SELECT count(), sum(qty) FROM {table}").result_rows == [
            (5000, sum(range(5000)))
        ]
        counted = client.query(
            f"SELECT count() FROM {table} WHERE symbol = {{s:String}} AND qty >= {{q:UInt32}}",
            parameters={"s": "S3", "q": 100},
        ).result_rows
        assert counted == [(sum(1 for i in range(100, 5000) if i % 7 == 3),)]
        df = client.query_df(f"SELECT symbol, price FROM {table} ORDER BY qty LIMIT 10")
        assert list(df.columns) == ["symbol", "price"] and len(df) == 10
        arrow = client.query_arrow(f"SELECT qty FROM {table} ORDER BY qty LIMIT 3")
        assert arrow.column("qty").to_pylist() == [0, 1, 2]
        client.insert_df(table, client.query_df(f"SELECT * FROM {table} LIMIT 10"))
        assert client.command(f"SELECT count() FROM {table}") == 5010
        limited = client.query(
            "SELECT value FROM system.settings WHERE name = 'max_threads'", settings={"max_threads": 1}
        )
        assert limited.result_rows == [("1",)]
        with pytest.raises(Exception, match=r"UNKNOWN_TABLE|Unknown table"):
            client.query("SELECT * FROM no_such_table_here")
    finally:
        client.command(f"DROP TABLE IF EXISTS {table}")
        client.close()


def test_clickhouse_two_clients_share_the_engine(stack_settings: Settings) -> None:
    """Several processes' worth of clients see the same data (the point of the owning process)."""
    import clickhouse_connect

    host, port = stack_settings.stack.host, stack_settings.stack.clickhouse_http_port
    writer = clickhouse_connect.get_client(host=host, port=port)
    reader = clickhouse_connect.get_client(host=host, port=port)
    table = f"stockpulse.stack_share_{uuid.uuid4().hex[:8]}"
    try:
        writer.command(f"CREATE TABLE {table} (x UInt8) ENGINE = Memory")
        writer.insert(table, [[1], [2], [3]], column_names=["x"])
        assert reader.command(f"SELECT sum(x) FROM {table}") == 6
    finally:
        writer.command(f"DROP TABLE IF EXISTS {table}")
