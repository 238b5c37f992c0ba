#!/bin/bash
# Form the 6-node Redis Cluster (3 primaries, 3 replicas) once; a no-op when it already exists.
#   redis-cli --cluster create redis-1:6379 ... redis-6:6379 --cluster-replicas 1 --cluster-yes
# with the service names resolved to container IPs first (CLUSTER MEET takes addresses; clients
# are still redirected by hostname: every node runs --cluster-preferred-endpoint-type hostname).
set -euo pipefail

export REDISCLI_AUTH="${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
# host[:port] entries; overridable for a dry run outside compose
# (e.g. REDIS_CLUSTER_NODES="127.0.0.1:7001 127.0.0.1:7002 ...").
read -r -a NODES <<< "${REDIS_CLUSTER_NODES:-redis-1 redis-2 redis-3 redis-4 redis-5 redis-6}"
DEFAULT_PORT="${REDIS_PORT:-6379}"

host_of() { echo "${1%%:*}"; }
port_of() { if [[ "$1" == *:* ]]; then echo "${1##*:}"; else echo "$DEFAULT_PORT"; fi; }

FIRST="${NODES[0]}"
info() { redis-cli -h "$(host_of "$FIRST")" -p "$(port_of "$FIRST")" cluster info 2>/dev/null | tr -d '\r'; }
state() { info | sed -n 's/^cluster_state://p'; }
known() { info | sed -n 's/^cluster_known_nodes://p'; }

if [ "$(state)" = "ok" ] && [ "$(known)" = "${#NODES[@]}" ]; then
  echo "redis cluster already formed ($(known) nodes)"
  exit 0
fi

ADDRS=()
for node in "${NODES[@]}"; do
  host=$(host_of "$node")
  if [[ "$host" =~ ^[0-9.]+$ ]]; then
    ip="$host"
  else
    ip=$(getent hosts "$host" | awk '{print $1; exit}' || true)
  fi
  [ -n "$ip" ] || { echo "cannot resolve $host" >&2; exit 1; }
  ADDRS+=("$ip:$(port_of "$node")")
done

redis-cli --cluster create "${ADDRS[@]}" --cluster-replicas 1 --cluster-yes

for _ in $(seq 1 60); do
  if [ "$(state)" = "ok" ]; then
    echo "redis cluster formed: $(known) nodes"
    exit 0
  fi
  sleep 1
done
echo "redis cluster did not reach cluster_state:ok" >&2
exit 1
