"""Security review, as tests: broker SASL/SSL settings reach librdkafka and Faust, Redis AUTH/TLS and
PostgreSQL sslmode are applied on real connections, and no secret appears in what a run prints or logs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer
from pydantic import SecretStr

from sinks.base import SinkError
from streams.apps.common import faust_credentials
from streams.config import KafkaSettings, Settings
from streams.stores import postgres_orders, redis_state

pytestmark = pytest.mark.integration
SECRETS = {
    "STOCKPULSE_KAFKA__SSL_KEY_PASSWORD": "kafka-key-s3cr3t",
    "STOCKPULSE_CLICKHOUSE__PASSWORD": "clickhouse-s3cr3t",
    "STOCKPULSE_REDIS__PASSWORD": "redis-s3cr3t",
}


def test_sasl_ssl_settings_map_one_to_one_onto_librdkafka_and_faust() -> None:
    k = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("pw-123"),
    )
    conf = k.librdkafka()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "svc" and conf["sasl.password"] == "pw-123"
    Producer(k.librdkafka(consumer=False))  # librdkafka accepts every key (it raises on unknown ones)
    creds = faust_credentials(k)
    assert creds.username == "svc" and creds.password == "pw-123" and creds.ssl_context is not None
    assert "pw-123" not in repr(k) and "pw-123" not in k.model_dump_json()


async def test_redis_auth_and_tls_are_applied_to_the_connection(stack_settings: Settings) -> None:
    user = f"sp-test-{uuid.uuid4().hex[:6]}"
    nodes = [
        redis.Redis(stack_settings.stack.host, stack_settings.stack.redis_base_port + i) for i in range(6)
    ]
    for node in nodes:  # an ACL user with a password on every node of the shared cluster
        node.execute_command("ACL", "SETUSER", user, "on", ">right-pw", "~*", "&*", "+@all")

    def with_redis(**changes: object) -> Settings:
        r = stack_settings.redis.model_copy(update=changes)
        return stack_settings.model_copy(update={"redis": r})

    try:
        ok = await redis_state(with_redis(username=user, password=SecretStr("right-pw"))).open()
        assert (await ok.health()).ok
        await ok.close()
        with pytest.raises(SinkError) as err:
            await redis_state(with_redis(username=user, password=SecretStr("wrong-pw"))).open()
        assert "wrong-pw" not in str(err.value) and "right-pw" not in str(err.value)
    finally:
        for node in nodes:
            node.execute_command("ACL", "DELUSER", user)
            node.close()
    with pytest.raises(SinkError):  # a TLS handshake against a plain port fails
        await redis_state(with_redis(ssl=True)).open()


async def test_postgres_sslmode_from_the_dsn_is_applied(stack_settings: Settings) -> None:
    dsn = stack_settings.postgres.dsn.get_secret_value() + "?sslmode=require"
    settings = stack_settings.model_copy(
        update={"postgres": stack_settings.postgres.model_copy(update={"dsn": SecretStr(dsn)})}
    )
    with pytest.raises(SinkError, match=r"(?i)ssl"):  # the local server has no TLS: require must fail
        await postgres_orders(settings).open()


def test_no_secret_is_printed_or_logged(stack_settings: Settings, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("stockpulse"))
    env = {**os.environ, **SECRETS, "STOCKPULSE_POSTGRES__DSN": "postgresql://u:pg-s3cr3t@127.0.0.1:1/x"}
    runs = [
        [exe, "stack", "status"],
        [exe, "topics", "list"],
        [exe, "sql", "SELECT 1"],
        [exe, "feed", "--idle-exit", "1"],  # fails: no PostgreSQL for checkpoints at port 1
        [exe, "kill-switch", "status"],
    ]
    seen = ""
    for argv in runs:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        seen += out.stdout + out.stderr
    assert "error" in seen.lower(), "the failing runs must say what went wrong"
    logs = stack_settings.stack.dir / "logs"
    seen += "".join(p.read_text(errors="replace") for p in logs.glob("*.log") if p.stat().st_size < 5_000_000)
    for secret in [*SECRETS.values(), "pg-s3cr3t"]:
        assert secret not in seen, f"{secret} leaked into output or logs"
