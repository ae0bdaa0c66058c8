#!/usr/bin/env bash
# The edge benchmark: N WebSocket clients REGISTER through an edge to one Kamailio registrar,
# first through imsgw, then through Kamailio's own websocket module doing the same forwarding
# (deploy/lab/kamailio-ws-edge.cfg) as the reference. Each edge starts fresh, so its memory
# figure is its own. Bounded: every run stops by itself (--time-limit).
#
#   tools/loadgen/bench.sh [N] [CONCURRENCY]        (default 10000 200)
#
# Three runs: imsgw without token checks (the edge's own cost), imsgw requiring RFC 8898 Bearer
# tokens (the tool mints one per user from the gateway's keys before the run, then re-REGISTERs
# once, so the report shows a first, verifying REGISTER and a cached one), and the Kamailio
# reference, which checks no tokens.
#
# Prints each load tool report; the JSON lines are also kept in $BENCH_DIR/*.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10000}
conc=${2:-200}
dir=${BENCH_DIR:-$(mktemp -d /tmp/imsgw-bench.XXXXXX)}
mkdir -p "$dir"
echo "bench dir: $dir"

. tools/loadgen/common.sh

# One imsgw run: $1 = "tokens" (RFC 8898 Bearer tokens required, one minted per user by the
# tool from the gateway's keys, then one re-REGISTER each to show the cached check) or "plain"
# (sip.danger_allow_unauthenticated: the edge's own cost, no token checks).
run_imsgw() {
	local mode=$1
	echo
	echo "=== imsgw (release), UDP to the registrar, $mode"
	registrar
	local danger=false
	[ "$mode" = plain ] && danger=true
	# The tool opens every connection before any REGISTER, from a few dozen addresses: no crowd
	# of people does that, so the per-address caps are off here.
	imsgw_toml "$mode" "$danger" "max_connections = $(( n + 100 ))" \
		"max_connections_per_address = 0" "max_unregistered_per_address = 0"
	local token_args=()
	if [ "$mode" = tokens ]; then
		# The gateway creates key_dir with its first key on start; the tool only reads it.
		token_args=(--mint-key-dir "$dir/keys-$mode" --issuer http://127.0.0.1:8380
			--audience sip:ims.example --scope sip --token-ttl 600 --reregister 1)
	fi
	start_imsgw "$dir/imsgw.toml" "$dir/imsgw-$mode.log" http://127.0.0.1:8380
	"$load" --url ws://127.0.0.1:8380/sip --count "$n" --concurrency "$conc" \
		--source-ips 127.0.0.2-127.0.0.60 --pidfile "$dir/imsgw.pid" --hold 10 --time-limit 300 \
		--unregister "${token_args[@]}" | tee "$dir/imsgw-$mode.report"
	grep '^JSON: ' "$dir/imsgw-$mode.report" | sed 's/^JSON: //' >"$dir/imsgw-$mode.json" || true
	kill -TERM "$(cat "$dir/imsgw.pid")"
	rm -f "$dir/imsgw.pid"
	deploy/lab/kamailio-stop.sh "$dir" ims >/dev/null
}

run_imsgw plain
run_imsgw tokens

echo
echo "=== reference: Kamailio websocket edge, UDP to the registrar"
registrar
KAM_LOG_LEVEL=1 KAM_SHM_MB=$edge_shm deploy/lab/kamailio-start.sh ws-edge deploy/lab/kamailio-ws-edge.cfg "$dir" \
	-A WS_PORT=8390 -A EDGE_PORT=5380 -A 'IMS_URI="sip:127.0.0.1:5370"' >/dev/null
"$load" --url ws://127.0.0.1:8390/ --count "$n" --concurrency "$conc" \
	--source-ips 127.0.0.2-127.0.0.60 --pgrep-parent "$(cat "$dir/ws-edge.pid")" --hold 10 \
	--time-limit 300 --unregister | tee "$dir/kamailio.report"
grep '^JSON: ' "$dir/kamailio.report" | sed 's/^JSON: //' >"$dir/kamailio.json" || true
