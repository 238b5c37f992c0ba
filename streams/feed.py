"""The feed handler: the hot ingest edge (confluent-kafka, not Faust).

Reads single-tick messages from ``ticks.raw`` (Avro ``Tick`` in the Confluent wire format, or JSON objects
``{"symbol", "ts_us", "price", "size"}`` for simple producers), validates them, routes invalid ones to the
dead-letter topic with the reason, assigns per-symbol gap-free sequence numbers, and publishes columnar
``TickBatch`` messages to ``ticks``: one batch per output partition (the symbol's murmur2 partition). Smart
batching: each loop takes whatever has arrived (up to ``consume_batch`` messages, waiting only when nothing
has) and publishes the batches as soon as it has drained its input, so a batch is small at a low rate (low
latency) and large at a high one; a batch is also cut at ``batch_max_ticks`` ticks, and after
``batch_max_ms`` milliseconds while the input never drains.

Event time (:mod:`processors.event_time`): an ``EndOfStream`` message (Avro, or JSON ``{"symbol": ...,
"end_of_stream": true}``) ends a symbol's input: the batch with its last ticks is cut at once and names it in
``closed_symbols``. While a ``ticks`` partition may hold open live bars, and only when the last consume call
drained the input (everything read so far is in published batches), the feed sends that partition its
watermark, its clock minus the delay (``event_time.max_delay_ms``, or twice the largest delay of a live tick
in the last 10 s if more), each time it passes a bar boundary (checked every
``event_time.watermark_interval_ms``): on the partition's open batch, or as a batch with no ticks. With
several feed processes, producers must partition ``ticks.raw`` by symbol with murmur2 (the Java client's
default), so that one feed writes each ``ticks`` partition and its watermark covers every tick there.

Delivery: at-least-once with deterministic identities. The per-symbol sequencers and the next offset of every
input partition are checkpointed in PostgreSQL after the producer has flushed (outputs acknowledged), so a
crash re-reads at most the inputs after the last checkpoint and re-assigns them the same sequence numbers;
downstream services drop (symbol, seq) pairs they have already applied. Producers must key ``ticks.raw``
by symbol (all ticks of a symbol in one partition, in order).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from processors.event_time import DelayTracker, WatermarkSchedule
from processors.price_state import parse_timeframe
from processors.ticks import FeedState, TickBatchBuilder, TickLimits, check_tick, partition_for
from schemas.serde import AvroSerde, WireFormatError, value_header
from sinks.checkpoints import SyncCheckpointStore
from streams import kafka
from streams.apps.checkpointing import DeliveryBook, StatePartitions
from streams.config import Settings
from streams.deadletter import DeadLetterEncoder
from streams.log_identity import describe_logs
from streams.metrics import (
    CHECKPOINTS,
    CONSUMED_OFFSET,
    DEAD_LETTERS,
    FETCH_STALLS,
    FETCH_WAIT,
    INPUT_END_OFFSET,
    MESSAGES,
    TICK_DELAY,
    TICKS,
    WATERMARK_DELAY,
    WATERMARKS,
    produced,
)

log = logging.getLogger("stockpulse.feed")
SERVICE = "feed"
LOOK_S = 0.5  # how often the fetch watchdog looks at the consumer


class InvalidTick(ValueError):
    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(f"{reason_code}: {reason}")
        self.reason_code = reason_code
        self.reason = reason


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class FeedStats:
    consumed: int = 0
    valid: int = 0
    dead_lettered: int = 0
    batches: int = 0
    checkpoints: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """A producer ended the input of ``symbol`` (e.g. the end of a replay)."""

    symbol: str


class TickDecoder:
    """Decodes a raw message into (symbol, ts_us, price, size) or an :class:`EndOfStream`, or raises
    InvalidTick."""

    def __init__(self, limits: TickLimits) -> None:
        self._avro = AvroSerde.for_record("Tick")
        self._eos = AvroSerde.for_record("EndOfStream")
        self._eos_header = value_header(self._eos.schema_id)
        self._limits = limits

    def _end_of_stream(self, symbol: object) -> EndOfStream:
        if not isinstance(symbol, str) or not self._limits.symbol_ok(symbol):
            problem = check_tick(symbol, 0, 1.0, 0.0, self._limits)
            raise InvalidTick(*(problem or ("invalid_symbol", f"end of stream for {symbol!r}")))
        return EndOfStream(symbol)

    def decode(self, value: bytes | None) -> tuple[str, int, float, float] | EndOfStream:
        if not value:
            raise InvalidTick("corrupt_payload", "empty message; send an Avro Tick or a JSON object")
        first = value[0]
        if first == 0:
            if value[:5] == self._eos_header:
                try:
                    return self._end_of_stream(self._eos.decode(value)["symbol"])
                except WireFormatError as exc:
                    raise InvalidTick(exc.reason_code, exc.reason) from None
            try:
                rec = self._avro.decode(value)
            except WireFormatError as exc:
                raise InvalidTick(exc.reason_code, exc.reason) from None
            symbol, ts, price, size = rec["symbol"], rec["ts_us"], rec["price"], rec["size"]
        elif first == 0x7B:  # '{'
            try:
                rec = json.loads(value)
            except ValueError as exc:
                raise InvalidTick(
                    "corrupt_payload", f"invalid JSON ({exc}); send one JSON object per tick"
                ) from None
            if isinstance(rec, dict) and rec.get("end_of_stream") is True and "price" not in rec:
                return self._end_of_stream(rec.get("symbol"))
            if not isinstance(rec, dict) or "symbol" not in rec or "price" not in rec or "ts_us" not in rec:
                raise InvalidTick(
                    "missing_field", 'a JSON tick needs "symbol", "ts_us" and "price" (and optionally "size")'
                )
            symbol, ts, price, size = rec["symbol"], rec["ts_us"], rec["price"], rec.get("size", 0.0)
        else:
            raise InvalidTick(
                "corrupt_payload",
                "message is neither Avro in the Confluent wire format (magic byte 0) nor a JSON object",
            )
        problem = check_tick(symbol, ts, price, size, self._limits)
        if problem is not None:
            raise InvalidTick(*problem)
        return symbol, ts, float(price), float(size)


class FeedHandler:
    """Consume ``ticks.raw`` -> validate -> sequence -> TickBatch per partition -> ``ticks``."""

    def __init__(self, settings: Settings, checkpoints: SyncCheckpointStore | None = None) -> None:
        self.settings = settings
        fs = settings.feed
        self.topics = settings.topics
        self.group_id = fs.group_id
        self.limits = TickLimits(
            fs.min_ts_us, fs.max_ts_us, fs.max_price, fs.symbol_pattern, frozenset(fs.symbols)
        )
        self.decoder = TickDecoder(self.limits)
        self.batch_serde = AvroSerde.for_record("TickBatch")
        self.dead = DeadLetterEncoder(SERVICE)
        self.stats = FeedStats()
        self._store = checkpoints or SyncCheckpointStore(settings.postgres.dsn.get_secret_value())
        self.fetch_wait = settings.fetch.policy(fs.fetch_wait_ms)
        self._consumer = self._new_consumer()
        self._look_at, self._got = 0.0, 0
        self._producer = kafka.producer(settings)
        self._state: dict[int, FeedState] = {}
        raw = self.topics.ticks_raw
        # the workers' delivery core: offsets, changed partitions and the rows of each checkpoint
        parts = StatePartitions({raw: self.topics.all_topics()[raw]})
        self.book = DeliveryBook([raw], parts, fs.checkpoint_ms / 1000, self._state.get)
        self._builders: dict[int, TickBatchBuilder] = {}
        self._batch_started = 0.0
        self.policy = settings.event_time.policy()
        timeframes = tuple(parse_timeframe(tf) for tf in self.topics.timeframes)
        p = self.policy
        self.delay = DelayTracker(p.max_delay_us)
        self._hold_us = max(timeframes) + p.allowed_lateness_us + p.watermark_interval_us  # plus the delay
        self.watermarks = WatermarkSchedule(
            hold_us=self._hold_us + p.max_delay_us,
            interval_us=p.watermark_interval_us,
            timeframes_us=timeframes,
            lateness_us=p.allowed_lateness_us,
        )
        self._delivery_errors: list[str] = []
        self._running = True
        self._assigned_at = 0.0
        self.last_process_end = 0.0

    def _new_consumer(self) -> Any:
        FETCH_WAIT.labels(SERVICE).set(self.fetch_wait.wait_ms)
        return kafka.consumer(
            self.settings,
            self.group_id,
            **{"isolation.level": "read_uncommitted", "fetch.wait.max.ms": self.fetch_wait.wait_ms},
        )

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self.topics.ticks_raw], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    # -- fetch watchdog (streams.fetch_wait) -----------------------------------------------------------
    def _behind(self) -> bool:
        """True when a partition's log, as its last fetch response reported it, holds more than we read."""
        for tp in self._consumer.assignment():
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high > self.book.position(tp.topic, tp.partition):
                return True
        return False

    def _export_positions(self) -> None:
        """Our position and the input's end as the last fetch response gave it (ticks.raw has producers
        that are not ours; streams.scrape.lags)."""
        for tp in self._consumer.assignment():
            part = str(tp.partition)
            CONSUMED_OFFSET.labels(SERVICE, tp.topic, part).set(self.book.position(tp.topic, tp.partition))
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                INPUT_END_OFFSET.labels(tp.topic, part).set(high)

    def _watch_fetches(self, got: int) -> None:
        self._got += got
        now = time.monotonic()
        if now < self._look_at:
            return
        self._look_at = now + LOOK_S
        got, self._got = self._got, 0
        self._export_positions()
        event = self.fetch_wait.observe(now, got, got == 0 and self._behind())
        if event is None:
            return
        FETCH_STALLS.labels(SERVICE).inc()
        was = self.fetch_wait.wait_ms if event == "stuck" else self.fetch_wait.wait_ms // 2
        log.warning(
            "fetch stall #%d: no data from %s for %.1f s while its log holds more than we read, waiting "
            "%d ms per fetch; %s",
            self.fetch_wait.stalls,
            self.topics.ticks_raw,
            max(self.fetch_wait.stall_s, 3 * was / 1000),
            was,
            f"reconnecting with fetch.wait.max.ms {self.fetch_wait.wait_ms}"
            if event == "raised"
            else "already at STOCKPULSE_FETCH__CEILING_MS: the broker cannot find the offset in time",
        )
        if event == "raised":  # librdkafka fixes the wait at creation: a new consumer, the group rebalances
            self._consumer.close()  # revokes: checkpoints first
            self._consumer = self._new_consumer()
            self._subscribe()

    # -- partition ownership ------------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        parts = [tp.partition for tp in partitions]
        topic = self.topics.ticks_raw
        saved = self._store.load(self.group_id, [topic], parts)
        ids, ends = describe_logs(self.settings, [(topic, p) for p in parts])
        on_stale = self.settings.checkpoint.on_stale_log
        saved, _ = self.book.check_logs(saved, ids, ends, on_stale, SERVICE, self.group_id)
        blobs = self.book.restored(parts, saved)
        now = _now_us()
        for tp in partitions:
            cp = saved.get((topic, tp.partition))
            if cp is not None:
                tp.offset = cp.next_offset  # seek: nothing below the checkpoint is delivered again
                state = self._state[tp.partition] = FeedState.from_bytes(blobs.get(tp.partition, b""))
                # live bars routed before a restart still need their watermarks
                recent = [out for out, at in state.live_outs.items() if now - at < self.watermarks.hold_us]
                self.watermarks.cover(recent, now)
            else:
                self._state[tp.partition] = FeedState()
        log.info("assigned %s (restored %d checkpoints)", parts, len(saved))
        self._assigned_at = time.monotonic()
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.checkpoint(force=True)
        for tp in partitions:
            self._state.pop(tp.partition, None)
        self.book.forget([tp.partition for tp in partitions])
        consumer.unassign()

    # -- hot path -------------------------------------------------------------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        else:
            produced(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

    def _dead_letter(self, msg: Message, reason_code: str, reason: str) -> None:
        value = self.dead.encode(
            reason_code,
            reason,
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            msg.key(),
            msg.value(),
        )
        self._producer.produce(self.topics.dead_letter, value, key=msg.key(), on_delivery=self._on_delivery)
        self.stats.dead_lettered += 1
        self.stats.by_reason[reason_code] = self.stats.by_reason.get(reason_code, 0) + 1
        DEAD_LETTERS.labels(SERVICE, reason_code).inc()

    def process(self, msgs: list[Message]) -> None:
        now = _now_us()
        decode = self.decoder.decode
        n_out = self.topics.tick_partitions
        max_ticks = self.settings.feed.batch_max_ticks
        mode = self.policy.mode
        live_from = (
            now - self.policy.live_window_us if mode == "auto" else (-(2**63) if mode == "live" else 2**63)
        )
        live_parts: set[tuple[int, int]] = set()  # (input partition, output partition) of live ticks
        last: dict[int, int] = {}  # input partition -> its last offset in msgs
        oldest_live = now
        valid = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            part = msg.partition()
            assert part is not None
            offset = msg.offset()
            assert offset is not None
            last[part] = offset
            try:
                decoded = decode(msg.value())
            except InvalidTick as exc:
                self._dead_letter(msg, exc.reason_code, exc.reason)
                continue
            if isinstance(decoded, EndOfStream):
                out = partition_for(decoded.symbol, n_out)
                builder = self._builder(out, part, offset)
                builder.closed.append(decoded.symbol)
                self._publish(out, builder)  # cut here: ticks after it belong to a new input
                del self._builders[out]
                continue
            symbol, ts, price, size = decoded
            seq = self._state[part].sequencer.next(symbol)
            out = partition_for(symbol, n_out)
            builder = self._builder(out, part, offset)
            builder.add(symbol, ts, price, size, seq, now)
            if ts >= live_from:
                live_parts.add((part, out))
                oldest_live = min(oldest_live, ts)
            valid += 1
            if len(builder) >= max_ticks:
                self._publish(out, builder)
                del self._builders[out]
        for part, offset in last.items():
            self.book.processed(self.topics.ticks_raw, part, offset)
        if live_parts:
            TICK_DELAY.observe(max(0, now - oldest_live) / 1e6)
            self.delay.observe(now, now - oldest_live)
            self.watermarks.hold_us = self._hold_us + self.delay.delay(now)
            for part, out in live_parts:
                self.watermarks.live_tick(out, now)
                self._state[part].live_outs[out] = now
        self.last_process_end = time.perf_counter()
        self.stats.consumed += len(msgs)
        self.stats.valid += valid
        TICKS.labels(SERVICE).inc(valid)
        MESSAGES.labels(SERVICE, self.topics.ticks_raw, "in").inc(len(msgs))

    def _builder(self, out: int, part: int, offset: int) -> TickBatchBuilder:
        builder = self._builders.get(out)
        if builder is None:
            builder = self._builders[out] = TickBatchBuilder()
            builder.source_partition, builder.first_offset = part, offset
            if not self._batch_started:
                self._batch_started = time.monotonic()
        return builder

    def send_watermarks(self) -> None:
        """Call only when everything consumed so far is in batches: the watermark (the clock minus the
        delay, :class:`DelayTracker`) of each partition that may hold open live bars, when it passes a bar
        boundary, goes on the partition's open batch (published now) or on a batch of its own."""
        now = _now_us()
        delay = self.delay.delay(now)
        due = self.watermarks.due(now, now - delay)
        if not due:
            return
        watermark = now - delay
        WATERMARK_DELAY.set(delay / 1e6)
        for out in due:
            builder = self._builders.pop(out, None) or TickBatchBuilder()
            builder.watermark_us = watermark
            self._publish(out, builder)
        if not self._builders:
            self._batch_started = 0.0
        WATERMARKS.labels(SERVICE).inc(len(due))

    def _publish(self, out: int, builder: TickBatchBuilder) -> None:
        if builder.first_offset >= 0:
            batch_id = f"{self.group_id}:{builder.source_partition}@{builder.first_offset}>{out}"
        else:  # a watermark alone
            batch_id = f"{self.group_id}:watermark@{builder.watermark_us}>{out}"
        value = self.batch_serde.encode(builder.record(batch_id, _now_us()))
        self._producer.produce(self.topics.ticks, value, partition=out, on_delivery=self._on_delivery)
        self.stats.batches += 1
        MESSAGES.labels(SERVICE, self.topics.ticks, "out").inc()

    def flush_batches(self) -> None:
        for out, builder in self._builders.items():
            self._publish(out, builder)
        self._builders.clear()
        self._batch_started = 0.0
        self._producer.poll(0)

    def checkpoint(self, force: bool = False) -> None:
        """Flush batches and the producer, then write state + offsets, then commit offsets to Kafka (the
        workers' order; the rows come from the shared :class:`~streams.apps.checkpointing.DeliveryBook`)."""
        if not force and not self.book.due():  # nothing consumed, or feed.checkpoint_ms not yet passed
            return
        self.flush_batches()
        taken = self.book.take()
        if taken is None:
            return
        try:
            remaining = self._producer.flush(30)
            if remaining or self._delivery_errors:
                raise RuntimeError(
                    f"producer could not deliver {remaining} messages ({self._delivery_errors[:3]}); "
                    "not checkpointing: the inputs will be re-read after restart"
                )
            self._store.save(self.group_id, taken.rows)
        except BaseException:
            self.book.give_back(taken)
            raise
        self.book.saved(taken)
        self._consumer.commit(
            offsets=[TopicPartition(t, p, cp.next_offset) for (t, p), cp in taken.rows.items()],
            asynchronous=True,
        )
        self.stats.checkpoints += 1
        CHECKPOINTS.labels(SERVICE).inc()

    def _take(self, most: int, wait_s: float) -> list[Message]:
        """Smart batching: whatever has arrived, up to ``most`` messages, without waiting; only when nothing
        has, wait up to ``wait_s`` for the first message and take what came with it. (``consume(n, t)``
        alone waits for ``n`` messages or the whole ``t``: a fixed time cut at low rates.)"""
        msgs: list[Message] = self._consumer.consume(num_messages=most, timeout=0)
        if msgs:
            return msgs
        msgs = self._consumer.consume(num_messages=1, timeout=wait_s)
        if msgs and most > 1:
            msgs += self._consumer.consume(num_messages=most - 1, timeout=0)
        return msgs

    def stop(self, *_: Any) -> None:
        self._running = False

    def run(self, idle_exit_s: float | None = None, install_signals: bool = True) -> FeedStats:
        """Run until SIGTERM/SIGINT (or ``idle_exit_s`` seconds without input); returns the counts."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        self._subscribe()
        max_ms = self.settings.feed.batch_max_ms / 1000
        take = self.settings.feed.consume_batch
        last_input = time.monotonic()
        try:
            while self._running:
                wait_s = min(max_ms, 0.05)
                watermark_in = self.watermarks.wait_us(_now_us())  # the next watermark may be due sooner
                if watermark_in is not None:
                    wait_s = min(wait_s, watermark_in / 1e6)
                msgs = self._take(take, wait_s)
                self._watch_fetches(len(msgs))
                if msgs:
                    self.process(msgs)
                    last_input = time.monotonic()
                elif (
                    idle_exit_s is not None
                    and self._assigned_at
                    and time.monotonic() - max(last_input, self._assigned_at) > idle_exit_s
                ):
                    break
                if len(msgs) < take:  # drained what had arrived: publish it (a watermark cannot overtake it)
                    self.send_watermarks()
                    self.flush_batches()
                elif self._batch_started and time.monotonic() - self._batch_started >= max_ms:
                    self.flush_batches()
                self.checkpoint()
                self._producer.poll(0)
            self.checkpoint(force=True)
        finally:
            self._consumer.close()
            self._store.close()
        return self.stats
