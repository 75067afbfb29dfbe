#!/usr/bin/env bash
# bench/cefd-sut.sh PORT OUT [disk|memory] [WORKERS] — runs `cefd run` as a system under test for
# ../shared/bench-peer: one TCP listener on 127.0.0.1:PORT, the ksc normalizer, NDJSON
# file output OUT, the output's buffer on disk (default, fsync every second) or in memory,
# WORKERS decode threads (default -1: one per core). CEFD_SUT_KSC=1 adds the KSC integration
# with one connection (to an address where no KSC answers: the import fails, as before the first
# sync) and one `ksctasks` response rule on the detections.
# CEFD_NODE_FLAGS replaces the node/V8 flags (default --single-threaded-gc --max-semi-space-size=4 --no-incremental-marking, as the package runs it).
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
if [[ "${CEFD_SUT_KSC:-0}" == 1 ]]; then
  cat >> "$STATE/cefd.yaml" <<YAML
ksc:
  enabled: true
  response_rules:
    - { name: scan, type: ksctasks, tasks: [KUMA scan], asset_field: device, filter: 'cef.deviceEventClassId == "GNRL_EV_VIRUS_FOUND"' }
YAML
  echo bench | node "$HERE/dist/src/cli.js" ksc connections add --config "$STATE/cefd.yaml" --name bench --url 127.0.0.1:9 --insecure --user bench --password-stdin >/dev/null 2>&1
fi
# Not exec: the shell stays to remove $STATE when the harness stops the process group
# (node gets the same signal from the group; the shell only waits for it).
node ${CEFD_NODE_FLAGS---single-threaded-gc --max-semi-space-size=4 --no-incremental-marking} "$HERE/dist/src/cli.js" run --config "$STATE/cefd.yaml" &
NODE_PID=$!
trap 'wait "$NODE_PID" 2>/dev/null || true; rm -rf "$STATE"; exit 0' TERM INT
rc=0
wait "$NODE_PID" || rc=$?
rm -rf "$STATE"
exit "$rc"
