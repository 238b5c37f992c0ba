"""Adapters for the stores: Redis (hot state), ClickHouse (history), PostgreSQL (orders of record)."""
