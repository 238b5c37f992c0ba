"""Avro schemas: catalog in sync with the files, backward compatibility, wire format and its errors."""

from __future__ import annotations

import copy
import io
import json
import struct

import fastavro
import pytest

from schemas.catalog import (
    SchemaCatalog,
    SchemaError,
    check_backward_compatible,
    example_record,
    load_avsc_files,
    register_changes,
)
from schemas.serde import AvroSerde, WireFormatError, check_catalog_matches_files

MESSAGES = [
    "Tick",
    "TickBatch",
    "Bar",
    "BarBatch",
    "IndicatorSnapshot",
    "IndicatorBatch",
    "Signal",
    "Order",
    "Fill",
    "DeadLetter",
]


def test_every_message_has_a_schema_in_the_catalog() -> None:
    cat = SchemaCatalog.load()
    for name in MESSAGES:
        assert cat.latest(name).schema_id > 0


def test_catalog_matches_the_avsc_files() -> None:
    assert check_catalog_matches_files() == [], "run `stockpulse schemas register` after changing an .avsc"


def test_every_version_is_readable_with_the_latest_schema() -> None:
    cat = SchemaCatalog.load()
    for name in cat.names():
        latest = cat.latest(name)
        for old in cat.versions(name):
            record = example_record(old.schema)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, old.parsed, record)
            buf.seek(0)
            fastavro.schemaless_reader(buf, old.parsed, latest.parsed)


@pytest.mark.parametrize("name", MESSAGES)
def test_wire_format_round_trip(name: str) -> None:
    serde = AvroSerde.for_record(name)
    record = example_record(SchemaCatalog.load().latest(name).schema)
    data = serde.encode(record)
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert (magic, schema_id) == (0, serde.schema_id)
    assert serde.decode(data) == record


def test_decode_errors_name_the_problem() -> None:
    tick = AvroSerde.for_record("Tick")
    good = tick.encode({"symbol": "A", "ts_us": 1, "price": 1.0, "size": 0.0, "source": ""})
    with pytest.raises(WireFormatError) as e:
        tick.decode(b"\x01garbage")
    assert e.value.reason_code == "corrupt_payload"
    with pytest.raises(WireFormatError) as e:
        tick.decode(b"\x00\x00\x0f\x42\x40" + good[5:])
    assert e.value.reason_code == "unknown_schema_id"
    bar = AvroSerde.for_record("Bar").encode(example_record(SchemaCatalog.load().latest("Bar").schema))
    with pytest.raises(WireFormatError) as e:
        tick.decode(bar)
    assert e.value.reason_code == "wrong_schema" and "com.stockpulse.Bar" in e.value.reason
    with pytest.raises(WireFormatError) as e:
        tick.decode(good[:-3])
    assert e.value.reason_code == "corrupt_payload"
    with pytest.raises(WireFormatError) as e:
        tick.decode(good + b"\x00\x01")
    assert "trailing" in e.value.reason


def test_incompatible_change_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    avro = tmp_path / "avro"
    avro.mkdir()
    schema = json.loads((load_avsc_files.__globals__["AVRO_DIR"] / "Tick.avsc").read_text())
    (avro / "Tick.avsc").write_text(json.dumps(schema))
    catalog = tmp_path / "catalog.json"
    assert register_changes(catalog, avro) == ["com.stockpulse.Tick v1 id=1"]
    assert register_changes(catalog, avro) == []
    compatible = copy.deepcopy(schema)
    compatible["fields"].append({"name": "venue_seq", "type": "long", "default": -1})
    (avro / "Tick.avsc").write_text(json.dumps(compatible))
    assert register_changes(catalog, avro) == ["com.stockpulse.Tick v2 id=2"]
    broken = copy.deepcopy(compatible)
    broken["fields"].append({"name": "exchange", "type": "string"})  # no default: old data lacks it
    (avro / "Tick.avsc").write_text(json.dumps(broken))
    with pytest.raises(SchemaError, match="cannot read data written with the previous version"):
        register_changes(catalog, avro)
    assert len(SchemaCatalog.load(catalog).versions("Tick")) == 2


def test_old_writer_data_is_resolved_to_the_new_reader(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = json.loads((load_avsc_files.__globals__["AVRO_DIR"] / "Tick.avsc").read_text())
    new = copy.deepcopy(old)
    new["fields"].append({"name": "venue_seq", "type": "long", "default": -1})
    check_backward_compatible(
        fastavro.parse_schema(new, _write_hint=False), fastavro.parse_schema(old, _write_hint=False)
    )
    cat = SchemaCatalog(
        {
            "com.stockpulse.Tick": [
                {"version": 1, "id": 5, "schema": old},
                {"version": 2, "id": 6, "schema": new},
            ]
        }
    )
    v1_data = AvroSerde(_Pinned(cat, 5), "Tick").encode(
        {"symbol": "A", "ts_us": 3, "price": 2.0, "size": 1.0}
    )
    decoded = AvroSerde(cat, "Tick").decode(v1_data)
    assert decoded["venue_seq"] == -1 and decoded["price"] == 2.0


class _Pinned:
    """A schema source whose 'latest' is an older version (an old producer)."""

    def __init__(self, cat: SchemaCatalog, schema_id: int) -> None:
        self.cat, self.schema_id = cat, schema_id

    def latest(self, name: str):  # type: ignore[no-untyped-def]
        return self.cat.by_id(self.schema_id)

    def by_id(self, schema_id: int):  # type: ignore[no-untyped-def]
        return self.cat.by_id(schema_id)
