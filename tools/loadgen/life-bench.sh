#!/usr/bin/env bash
# Open-loop client lives (issue 11 §3): new clients at a fixed rate, each connecting, doing the
# WebSocket handshake, REGISTERing, un-REGISTERing and closing, through imsgw (every client with
# its own ES256 token, minted before the run) and then through Kamailio's websocket edge (no
# tokens) to the same Kamailio registrar. Prints each report: REGISTER p50/p99 at that rate, the
# lives that failed, and the edge's CPU per life. Bounded: rate × duration clients, then stop.
#
#   tools/loadgen/life-bench.sh [RATE] [SECONDS]        (default 1000 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-1000}
secs=${2:-10}
dir=${BENCH_DIR:-$(mktemp -d /tmp/imsgw-life.XXXXXX)}
mkdir -p "$dir"
echo "bench dir: $dir"

n=$(awk "BEGIN { printf \"%d\", $rate * $secs }")
. tools/loadgen/common.sh

# Sources over 127.0.0.0/8: one address's ephemeral ports would run out, and each address stays
# within imsgw's per-address caps as a crowd of real people would.
sources=127.0.1.1-127.0.8.255

echo
echo "=== imsgw (release), $rate new clients/s for $secs s, a token each"
registrar
imsgw_toml life false
start_imsgw "$dir/imsgw.toml" "$dir/imsgw.log" http://127.0.0.1:8380
# PERF=1: a flat CPU profile of imsgw during the run (perf, software clock), in $dir/perf.data.
if [ "${PERF:-}" = 1 ]; then
	perf record -q -e cpu-clock -F 4000 -p "$(cat "$dir/imsgw.pid")" -o "$dir/perf.data" >/dev/null 2>&1 &
	perf_pid=$!
fi
"$load" life --url ws://127.0.0.1:8380/sip --rate "$rate" --duration "$secs" \
	--source-ips "$sources" --pidfile "$dir/imsgw.pid" \
	--mint-key-dir "$dir/keys-life" --issuer http://127.0.0.1:8380 --audience sip:ims.example \
	--scope sip --token-ttl 600 | tee "$dir/imsgw.report" || true
if [ -n "${perf_pid:-}" ]; then
	kill -INT "$perf_pid"; wait "$perf_pid" || true
	perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 >"$dir/perf.txt"
	echo "profile: $dir/perf.txt"
fi
[ "${IMSGW_ONLY:-}" = 1 ] && exit 0
kill -TERM "$(cat "$dir/imsgw.pid")"
rm -f "$dir/imsgw.pid"
deploy/lab/kamailio-stop.sh "$dir" ims >/dev/null

echo
echo "=== reference: Kamailio websocket edge, $rate new clients/s for $secs s, no tokens"
registrar
KAM_LOG_LEVEL=1 KAM_SHM_MB=$edge_shm deploy/lab/kamailio-start.sh ws-edge deploy/lab/kamailio-ws-edge.cfg "$dir" \
	-A WS_PORT=8390 -A EDGE_PORT=5380 -A 'IMS_URI="sip:127.0.0.1:5370"' >/dev/null
"$load" life --url ws://127.0.0.1:8390/ --rate "$rate" --duration "$secs" \
	--source-ips "$sources" --pgrep-parent "$(cat "$dir/ws-edge.pid")" | tee "$dir/kamailio.report" || true
