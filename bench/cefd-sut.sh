#!/usr/bin/env bash
# bench/cefd-sut.sh PORT OUT [disk|memory] [WORKERS] — runs `cefd run` as a system under test for
# ../shared/bench-peer: one TCP listener on 127.0.0.1:PORT, the ksc normalizer, NDJSON
# file output OUT, the output's buffer on disk (default, fsync every second) or in memory,
# WORKERS decode threads (default -1: one per core).
# Used by bench/e2e.mjs and with bench-peer's --add:
#   ./bench-all.sh --add cefd 5600 'exec /path/to/cefd/bench/cefd-sut.sh {PORT} {OUT} disk'
set -euo pipefail
PORT="$1"; OUT="$2"; BUFFER="${3:-disk}"; WORKERS="${4:--1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$(mktemp -d /tmp/cefd-sut.XXXXXX)"
cat > "$STATE/cefd.yaml" <<YAML
state_dir: $STATE/state
decode_workers: $WORKERS
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: $PORT, normalizers: [ksc] } ]
outputs: [ { name: events, type: file, path: "$OUT", buffer: { type: $BUFFER } } ]
dead_letter: { path: $STATE/dead.ndjson, buffer: { type: memory } }
metrics: { enabled: false }
logging: { level: warn }
YAML
exec node ${CEFD_NODE_FLAGS:-} "$HERE/dist/src/cli.js" run --config "$STATE/cefd.yaml"
