#!/bin/bash
# Streaming replica: on first start, clone the primary with pg_basebackup (-R writes
# standby.signal and primary_conninfo, -S uses the slot the primary created), then run as a hot
# standby. Later starts just resume streaming.
set -euo pipefail

PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "waiting for ${PRIMARY_HOST}"
  until pg_isready -q -h "$PRIMARY_HOST" -p 5432; do sleep 1; done
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  gosu postgres pg_basebackup \
    --dbname="host=${PRIMARY_HOST} port=5432 user=${REPLICATION_USER} password=${REPLICATION_PASSWORD}" \
    --pgdata="$PGDATA" --wal-method=stream --write-recovery-conf --slot="$REPLICATION_SLOT" --checkpoint=fast
fi

chown -R postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"
exec gosu postgres postgres -c hot_standby=on -c max_standby_streaming_delay=30s
