"""Dead-letter records: the original bytes, where they came from, and a readable reason."""

from __future__ import annotations

import time
from typing import Any

from schemas.serde import AvroSerde

MAX_PAYLOAD = 64 * 1024


class DeadLetterEncoder:
    """Builds DeadLetter Avro messages for one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._serde = AvroSerde.for_record("DeadLetter")

    def encode(
        self,
        reason_code: str,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        payload: bytes | None,
    ) -> bytes:
        record: dict[str, Any] = {
            "reason_code": reason_code,
            "reason": reason,
            "service": self.service,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key[:1024] if key else None,
            "payload": (payload or b"")[:MAX_PAYLOAD],
            "ts_us": time.time_ns() // 1000,
        }
        return self._serde.encode(record)
