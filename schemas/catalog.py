"""The Avro schema catalog: the ``.avsc`` files and the ids and versions checked into ``catalog.json``.

Every message type has a record schema in ``schemas/avro/<Name>.avsc``. ``catalog.json`` keeps, per record
name, every version ever published with its global schema id and its full (expanded) schema, so that data
written with an old version can always be read. A changed ``.avsc`` must be registered as a new version
(``stockpulse schemas register``), which refuses changes that are not backward compatible (a reader with the
new schema must read data written with every older one).

>>> cat = SchemaCatalog.load()
>>> cat.latest("Tick").name
'com.stockpulse.Tick'
>>> cat.by_id(cat.latest("Tick").schema_id).version >= 1
True
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

AVRO_DIR = Path(__file__).resolve().parent / "avro"
CATALOG_FILE = AVRO_DIR / "catalog.json"
NAMESPACE = "com.stockpulse"


class SchemaError(ValueError):
    """A schema file or the catalog is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class SchemaVersion:
    """One published version of a record schema."""

    name: str
    version: int
    schema_id: int
    schema: dict[str, Any]
    parsed: Any

    @property
    def fingerprint(self) -> str:
        return schema_fingerprint(self.schema)


def schema_fingerprint(schema: dict[str, Any]) -> str:
    """Rabin fingerprint (hex) of the schema's parsing canonical form."""
    return str(fingerprint(to_parsing_canonical_form(fastavro.parse_schema(schema)), "CRC-64-AVRO"))


def full_name(name: str) -> str:
    return name if "." in name else f"{NAMESPACE}.{name}"


def load_avsc_files(avro_dir: Path = AVRO_DIR) -> dict[str, dict[str, Any]]:
    """Parse every ``.avsc`` file (in dependency order) and return full name -> expanded schema."""
    raw = {}
    for path in sorted(avro_dir.glob("*.avsc")):
        try:
            raw[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON ({exc}); fix the file") from exc
    named: dict[str, Any] = {}
    out: dict[str, Any] = {}
    pending = dict(raw)
    while pending:
        progressed = False
        for stem, schema in list(pending.items()):
            try:
                fastavro.parse_schema(schema, named_schemas=named)
            except fastavro.schema.UnknownType:
                continue
            except Exception as exc:
                raise SchemaError(f"{avro_dir / stem}.avsc: invalid Avro schema: {exc}") from exc
            out[full_name(schema["name"])] = fastavro.parse_schema(
                schema, named_schemas=dict(named), expand=True, _write_hint=False
            )
            del pending[stem]
            progressed = True
        if not progressed:
            raise SchemaError(f"schemas reference unknown types: {sorted(pending)}; define the missing types")
    return out


def check_backward_compatible(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Raise SchemaError unless a reader using ``new`` can read data written with ``old``."""
    sample = example_record(old)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), sample)
    buf.seek(0)
    try:
        fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(new))
    except Exception as exc:
        raise SchemaError(
            f"{new.get('name')}: the new schema cannot read data written with the previous version ({exc}). "
            "Give new fields a default, do not remove fields without defaults, and do not change types."
        ) from exc


def example_record(schema: Any, _named: dict[str, Any] | None = None) -> Any:
    """A deterministic sample value for ``schema`` (used by compatibility checks and tests)."""
    named = {} if _named is None else _named
    if isinstance(schema, str):
        return (
            {
                "string": "X",
                "int": 7,
                "long": 7,
                "double": 1.5,
                "float": 1.5,
                "boolean": True,
                "bytes": b"x",
                "null": None,
            }.get(schema)
            if schema not in named
            else example_record(named[schema], named)
        )
    if isinstance(schema, list):
        return example_record(schema[-1], named)
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        named[full_name(schema["name"])] = schema
        return {f["name"]: example_record(f["type"], named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        named[full_name(schema["name"])] = schema
        return schema["symbols"][0]
    if kind == "array":
        return [example_record(schema["items"], named)] * 2
    if kind == "map":
        return {"k": example_record(schema["values"], named)}
    if kind == "fixed":
        return b"\0" * schema["size"]
    return example_record(kind, named)


class SchemaCatalog:
    """Schema ids and versions from ``catalog.json`` (see the module docstring)."""

    def __init__(self, entries: dict[str, list[dict[str, Any]]]) -> None:
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_id: dict[int, SchemaVersion] = {}
        for name, versions in entries.items():
            for v in versions:
                sv = SchemaVersion(
                    name=name,
                    version=int(v["version"]),
                    schema_id=int(v["id"]),
                    schema=v["schema"],
                    parsed=fastavro.parse_schema(v["schema"]),
                )
                if sv.schema_id in self._by_id:
                    raise SchemaError(f"catalog.json: schema id {sv.schema_id} used twice; ids are global")
                self._by_id[sv.schema_id] = sv
                self._by_name.setdefault(name, []).append(sv)
        for known in self._by_name.values():
            known.sort(key=lambda s: s.version)

    @classmethod
    def load(cls, path: Path = CATALOG_FILE) -> SchemaCatalog:
        if not path.exists():
            raise SchemaError(f"{path} is missing; run `stockpulse schemas register` to create it")
        return cls(json.loads(path.read_text()))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        try:
            return self._by_name[full_name(name)]
        except KeyError:
            raise SchemaError(
                f"no schema named {full_name(name)} in the catalog; known: {self.names()}"
            ) from None

    def latest(self, name: str) -> SchemaVersion:
        return self.versions(name)[-1]

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise SchemaError(
                f"unknown schema id {schema_id}: the producer used a schema this build does not know; "
                "upgrade this service or register the schema"
            ) from None

    def next_id(self) -> int:
        return max(self._by_id, default=0) + 1

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            name: [{"version": v.version, "id": v.schema_id, "schema": v.schema} for v in versions]
            for name, versions in sorted(self._by_name.items())
        }


def register_changes(path: Path = CATALOG_FILE, avro_dir: Path = AVRO_DIR) -> list[str]:
    """Add a catalog version for every new or changed ``.avsc``; return what was added.

    Raises SchemaError (and writes nothing) if a change is not backward compatible.
    """
    current = load_avsc_files(avro_dir)
    entries = json.loads(path.read_text()) if path.exists() else {}
    catalog = SchemaCatalog(entries)
    next_id = catalog.next_id()
    added = []
    for name, schema in sorted(current.items()):
        versions = entries.setdefault(name, [])
        if versions and schema_fingerprint(versions[-1]["schema"]) == schema_fingerprint(schema):
            continue
        for old in versions:
            check_backward_compatible(schema, old["schema"])
        version = len(versions) + 1
        versions.append({"version": version, "id": next_id, "schema": schema})
        added.append(f"{name} v{version} id={next_id}")
        next_id += 1
    if added:
        path.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    return added
