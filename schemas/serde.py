"""Avro serialization in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Schema ids come from the checked-in catalog (default) or a Schema Registry (see ``schemas.registry``).
Decoding reads the writer's schema id and resolves old versions to the current reader schema, so services
read data written by older producers.

>>> serde = AvroSerde.for_record("Tick")
>>> data = serde.encode({"symbol": "BTCUSDT", "ts_us": 1_610_000_000_000_000, "price": 40_000.5, "size": 0.1})
>>> data[0], int.from_bytes(data[1:5], "big") == serde.schema_id
(0, True)
>>> serde.decode(data)["price"]
40000.5
>>> serde.decode(b"garbage")
Traceback (most recent call last):
...
schemas.serde.WireFormatError: corrupt_payload: message does not start with the Confluent magic byte 0 ...
"""

from __future__ import annotations

import io
import struct
from typing import Any, Protocol

import fastavro

from schemas.catalog import SchemaCatalog, SchemaError, SchemaVersion, full_name, load_avsc_files

MAGIC = 0
HEADER = struct.Struct(">bI")


def value_header(schema_id: int) -> bytes:
    """The first 5 bytes of a message written with ``schema_id`` (magic byte and id).

    >>> value_header(9)
    b'\\x00\\x00\\x00\\x00\\t'
    """
    return HEADER.pack(MAGIC, schema_id)


class WireFormatError(ValueError):
    """A message that cannot be decoded. ``reason_code`` is machine-readable (dead-letter topic)."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(f"{reason_code}: {reason}")
        self.reason_code = reason_code
        self.reason = reason


class SchemaSource(Protocol):
    """Where schema ids come from: the catalog or a registry."""

    def latest(self, name: str) -> SchemaVersion: ...

    def by_id(self, schema_id: int) -> SchemaVersion: ...


_default_catalog: SchemaCatalog | None = None


def default_catalog() -> SchemaCatalog:
    global _default_catalog
    if _default_catalog is None:
        _default_catalog = SchemaCatalog.load()
    return _default_catalog


class AvroSerde:
    """Encode and decode one record type (e.g. ``Tick``) in the Confluent wire format."""

    def __init__(self, source: SchemaSource, name: str) -> None:
        self.name = full_name(name)
        self._source = source
        current = source.latest(self.name)
        self.schema_id = current.schema_id
        self._parsed = current.parsed
        self._header = value_header(current.schema_id)
        self._readers: dict[int, tuple[Any, Any]] = {current.schema_id: (current.parsed, None)}

    @classmethod
    def for_record(cls, name: str, source: SchemaSource | None = None) -> AvroSerde:
        return cls(source or default_catalog(), name)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self._parsed, record)
        return buf.getvalue()

    def _reader_for(self, schema_id: int) -> tuple[Any, Any]:
        found = self._readers.get(schema_id)
        if found is not None:
            return found
        try:
            writer = self._source.by_id(schema_id)
        except SchemaError as exc:
            raise WireFormatError("unknown_schema_id", str(exc)) from None
        if writer.name != self.name:
            raise WireFormatError(
                "wrong_schema",
                f"schema id {schema_id} is {writer.name}, but this topic carries {self.name}; "
                f"send {self.name.rsplit('.', 1)[-1]} messages here",
            )
        pair = (writer.parsed, self._parsed)
        self._readers[schema_id] = pair
        return pair

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER.size or data[0] != MAGIC:
            raise WireFormatError(
                "corrupt_payload",
                "message does not start with the Confluent magic byte 0 and a 4-byte schema id; "
                "produce it with an Avro serializer in the Confluent wire format (or JSON on ticks.raw)",
            )
        schema_id = int.from_bytes(data[1:5], "big")
        writer, reader = self._reader_for(schema_id)
        buf = io.BytesIO(data)
        buf.seek(HEADER.size)
        try:
            record = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:
            raise WireFormatError(
                "corrupt_payload",
                f"Avro body does not decode as {self.name} (schema id {schema_id}): {exc!r}",
            ) from None
        if buf.tell() != len(data):
            raise WireFormatError(
                "corrupt_payload",
                f"{len(data) - buf.tell()} trailing bytes after the {self.name} record: corrupt",
            )
        return record  # type: ignore[return-value]


def check_catalog_matches_files(catalog: SchemaCatalog | None = None) -> list[str]:
    """Names whose ``.avsc`` differs from the catalog's latest version (empty when in sync)."""
    from schemas.catalog import schema_fingerprint

    cat = catalog or default_catalog()
    out = []
    for name, schema in load_avsc_files().items():
        try:
            latest = cat.latest(name)
        except SchemaError:
            out.append(name)
            continue
        if latest.fingerprint != schema_fingerprint(schema):
            out.append(name)
    return out
