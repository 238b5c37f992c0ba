"""Schema ids from a Confluent Schema Registry (when ``STOCKPULSE_SCHEMAS__REGISTRY_URL`` is set).

Subjects follow the RecordNameStrategy: the subject is the record's full name
(``com.stockpulse.Tick``), so one schema serves every topic that carries it. On first use the local
``.avsc`` is registered (the registry enforces its own compatibility rules and answers with the
existing id when nothing changed).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import fastavro

from schemas.catalog import SchemaError, SchemaVersion, full_name, load_avsc_files

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistrySource:
    """A ``SchemaSource`` backed by a Schema Registry over HTTP."""

    def __init__(
        self, url: str, username: str | None = None, password: str | None = None, timeout: float = 5
    ):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = None
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        self._local = load_avsc_files()
        self._latest: dict[str, SchemaVersion] = {}
        self._by_id: dict[int, SchemaVersion] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", CONTENT_TYPE)
        req.add_header("Accept", CONTENT_TYPE)
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise SchemaError(f"schema registry {self.url}{path} answered {exc.code}: {detail}") from None
        except OSError as exc:
            raise SchemaError(
                f"schema registry {self.url} unreachable ({exc}); check STOCKPULSE_SCHEMAS__REGISTRY_URL "
                "or unset it to use the checked-in catalog"
            ) from None

    def latest(self, name: str) -> SchemaVersion:
        name = full_name(name)
        if name not in self._latest:
            schema = self._local.get(name)
            if schema is None:
                raise SchemaError(f"no local schema {name} to register")
            answer = self._call("POST", f"/subjects/{name}/versions", {"schema": json.dumps(schema)})
            version = self._call("GET", f"/subjects/{name}/versions/latest")
            sv = SchemaVersion(
                name, int(version["version"]), int(answer["id"]), schema, fastavro.parse_schema(schema)
            )
            self._latest[name] = sv
            self._by_id[sv.schema_id] = sv
        return self._latest[name]

    def by_id(self, schema_id: int) -> SchemaVersion:
        if schema_id not in self._by_id:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
            schema = json.loads(answer["schema"])
            name = full_name(schema["name"]) if isinstance(schema, dict) else str(schema_id)
            self._by_id[schema_id] = SchemaVersion(name, 0, schema_id, schema, fastavro.parse_schema(schema))
        return self._by_id[schema_id]
