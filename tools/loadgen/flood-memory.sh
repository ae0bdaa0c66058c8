#!/usr/bin/env bash
# Memory before, during and after a connection flood (issue 11 §1): a release imsgw, N
# never-registering WebSockets from many 127/8 sources (per-address caps off, so they all get
# in), held a few seconds, then dropped; prints the gateway's RSS every second and after some
# light HTTP activity. Bounded: N connections, then stop.
#
#   tools/loadgen/flood-memory.sh [N]        (default 10000; needs `npm ci` in tests/)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10000}
secs=${SECS:-18}
dir=$(mktemp -d /tmp/imsgw-flood.XXXXXX)
echo "run dir: $dir"
cargo build --release --locked -q -p imsgw
bin=${CARGO_TARGET_DIR:-target}/release
cat >"$dir/imsgw.toml" <<TOML
[http]
listen = "127.0.0.1:8480"
[sip]
domain = "ims.example"
listen = "127.0.0.1:5462"
upstream = "sip:127.0.0.1:5470;transport=udp"
[websocket]
max_connections = 20000
max_connections_per_address = 0
max_unregistered_per_address = 0
[waf]
issuer = "http://127.0.0.1:8480"
key_dir = "$dir/keys"
state_dir = "$dir/state"
[log]
filter = "warn"
TOML
"$bin/imsgw" serve --config "$dir/imsgw.toml" >"$dir/imsgw.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:8480/healthz >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
rss() { awk '/^VmRSS/ { printf "RSS %.1f MiB", $2 / 1024 }' "/proc/$pid/status"; }
echo "baseline: $(rss)"
node tools/loadgen/flood/flood.js ws://127.0.0.1:8480/sip "$n" 3000 &
flood=$!
for t in $(seq 1 "$secs"); do sleep 1; echo "t=${t}s $(rss)"; done
wait $flood
for r in 1 2 3; do
	for _ in $(seq 1 50); do curl -s -o /dev/null http://127.0.0.1:8480/healthz; sleep 0.05; done
	echo "after activity round $r: $(rss)"
done
curl -s http://127.0.0.1:8480/metrics | grep -E '^imsgw_ws_flows '
