#!/usr/bin/env bash
# The media benchmark (issue 10 §5): N browsers (imsgw-loadgen media: SIP over WebSocket,
# str0m WebRTC with ICE and DTLS-SRTP) call an RTP echo registered at the lab's IMS Kamailio,
# 50 G.711 packets/s each way, through each gateway in turn:
#   1. imsgw (IMSGW_BIN; skipped when unset), its media engine relaying to plain RTP;
#   2. the reference: Kamailio's websocket edge (deploy/lab/kamailio-ws-edge.cfg, WITH_RTPENGINE)
#      with Debian's rtpengine in userspace.
# Each gateway starts fresh for every N, so its memory figure is its own. Prints each report,
# then one table side by side. A tool, never run in CI; bounded: every run has a time limit.
#
#   IMSGW_BIN=/path/to/imsgw tools/loadgen/media-bench.sh [N ...]     (default: 100 400)
#
# Where the memory goes: build imsgw with `--features dhat-heap`; it writes dhat-heap.json in
# the working directory when it stops, and `tools/heap-sites.py dhat-heap.json N` sums it by site.
#
# Environment: DURATION (measured seconds per run, default 20), CODEC (pcma|pcmu), BENCH_DIR
# (kept: logs, configs, reports *.json), IMSGW_BIN, GATEWAYS (default "imsgw reference"; one of
# them alone to skip the other), LOADGEN_ARGS (more `imsgw-loadgen media` options for every run,
# e.g. "--media-threads 2").
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("$@")
[ "${#counts[@]}" -gt 0 ] || counts=(100 400)
duration=${DURATION:-20}
codec=${CODEC:-pcma}
dir=${BENCH_DIR:-$(mktemp -d /tmp/imsgw-media-bench.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
echo "media bench dir: $dir"

# Ports (loopback): IMS 5570; imsgw http 8580, sip 5562, media 40000, relay ports 41000-44999;
# Kamailio edge ws 8590, udp 5580; rtpengine ng 2291, ports 45000-49999.
ims_port=5570

cargo build --release --locked -q -p imsgw-loadgen
load=${CARGO_TARGET_DIR:-target}/release/imsgw-loadgen

# The reference needs Debian's rtpengine (deploy/lab/install-deps.sh does not install it: no test
# uses it).
if [[ " ${GATEWAYS:-imsgw reference} " == *" reference "* ]] && ! command -v rtpengine >/dev/null; then
	echo "installing Debian's rtpengine-daemon for the reference"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends rtpengine-daemon >/dev/null
fi

stop_pid() { # pid file: SIGTERM, wait up to 10 s, then SIGKILL
	local pf=$1 pid
	[ -s "$pf" ] || return 0
	pid=$(cat "$pf")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pf"
}
cleanup() {
	stop_pid "$dir/imsgw.pid"
	stop_pid "$dir/rtpengine.pid"
	deploy/lab/kamailio-stop.sh "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

max_n=0
for n in "${counts[@]}"; do [ "$n" -gt "$max_n" ] && max_n=$n; done
KAM_LOG_LEVEL=1 KAM_SHM_MB=$((128 + max_n / 10)) deploy/lab/kamailio-start.sh ims deploy/lab/kamailio-ims.cfg "$dir" \
	-A IMS_PORT=$ims_port -A IMS_TLS_PORT=$((ims_port + 1)) >/dev/null

# One tool run: $1 label, $2 N, $3 url, then measurement options.
bench() {
	local label=$1 n=$2 url=$3
	shift 3
	# Bounded twice: the tool's own --time-limit, and timeout(1) in case it hangs anyway.
	# LOADGEN_ARGS is split into words on purpose.
	timeout $((duration + 150)) "$load" media --url "$url" --ims 127.0.0.1:$ims_port --calls "$n" \
		--duration "$duration" --codec "$codec" --source-ips 127.0.0.2-127.0.0.60 \
		--setup-timeout 60 --time-limit $((duration + 120)) --label "$label" "$@" ${LOADGEN_ARGS:-} \
		>"$dir/$label-$n.report" || true
	cat "$dir/$label-$n.report"
	grep '^JSON: ' "$dir/$label-$n.report" | sed 's/^JSON: //' >"$dir/$label-$n.json" || true
}

run_imsgw() {
	local n=$1
	echo
	echo "=== imsgw, $n calls"
	rm -rf "$dir/imsgw-keys" "$dir/imsgw-state"
	cat >"$dir/imsgw.toml" <<TOML
[http]
listen = "127.0.0.1:8580"
[sip]
domain = "ims.example"
listen = "127.0.0.1:5562"
upstream = "sip:127.0.0.1:$ims_port;transport=udp"
[websocket]
max_connections = $((n + 100))
[waf]
issuer = "http://127.0.0.1:8580"
key_dir = "$dir/imsgw-keys"
state_dir = "$dir/imsgw-state"
audience = "sip:ims.example"
scope = "sip"
[media]
listen = "127.0.0.1:40000"
public_addresses = ["127.0.0.1"]
ims_address = "127.0.0.1"
rtp_ports = "41000-44999"
inactivity_secs = 30
[log]
filter = "warn"
TOML
	# imsgw reads IMSGW_<SECTION>__<KEY> and refuses unknown IMSGW_* names (IMSGW_BIN among them).
	env -u IMSGW_BIN "$IMSGW_BIN" serve --config "$dir/imsgw.toml" >"$dir/imsgw-$n.log" 2>&1 &
	echo $! >"$dir/imsgw.pid"
	local healthy=0
	for _ in $(seq 1 50); do
		curl -fsS http://127.0.0.1:8580/healthz >/dev/null 2>&1 && { healthy=1; break; }
		kill -0 "$(cat "$dir/imsgw.pid")" 2>/dev/null || break
		sleep 0.1
	done
	if [ "$healthy" != 1 ]; then
		echo "imsgw did not come up (no /healthz within 5 s); see $dir/imsgw-$n.log:" >&2
		tail -n 5 "$dir/imsgw-$n.log" >&2
		stop_pid "$dir/imsgw.pid"
		return 0
	fi
	bench imsgw "$n" ws://127.0.0.1:8580/sip --pidfile "$dir/imsgw.pid" \
		--mint-key-dir "$dir/imsgw-keys" --issuer http://127.0.0.1:8580 --audience sip:ims.example \
		--scope sip --token-ttl 600
	stop_pid "$dir/imsgw.pid"
}

run_reference() {
	local n=$1
	echo
	echo "=== reference: Kamailio websocket edge + rtpengine (userspace), $n calls"
	# --config-file=none: never the system's /etc/rtpengine; --table=-1: no kernel forwarding.
	rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:2291 \
		--port-min=45000 --port-max=49999 --delete-delay=0 --foreground --log-stderr --log-level=4 \
		--pidfile="$dir/rtpengine.pid" >"$dir/rtpengine-$n.log" 2>&1 &
	local started=0
	for _ in $(seq 1 50); do
		[ -s "$dir/rtpengine.pid" ] && { started=1; break; }
		sleep 0.1
	done
	if [ "$started" != 1 ]; then
		echo "rtpengine did not start; see $dir/rtpengine-$n.log" >&2
		return 0
	fi
	KAM_LOG_LEVEL=1 KAM_SHM_MB=$((256 + n * 100 / 1024)) deploy/lab/kamailio-start.sh ws-edge \
		deploy/lab/kamailio-ws-edge.cfg "$dir" -A WS_PORT=8590 -A EDGE_PORT=5580 \
		-A "IMS_URI=\"sip:127.0.0.1:$ims_port\"" -A WITH_RTPENGINE \
		-A 'RTPENGINE_SOCK="udp:127.0.0.1:2291"' >/dev/null
	bench kamailio-rtpengine "$n" ws://127.0.0.1:8590/ \
		--pgrep-parent "$(cat "$dir/ws-edge.pid")" --pidfile "$dir/rtpengine.pid"
	deploy/lab/kamailio-stop.sh "$dir" ws-edge >/dev/null
	stop_pid "$dir/rtpengine.pid"
}

gateways=${GATEWAYS:-imsgw reference}
for n in "${counts[@]}"; do
	case " $gateways " in *" imsgw "*)
		if [ -n "${IMSGW_BIN:-}" ]; then
			run_imsgw "$n"
		else
			echo
			echo "=== imsgw, $n calls: skipped (set IMSGW_BIN to an imsgw with a media engine)"
		fi
	esac
	case " $gateways " in *" reference "*) run_reference "$n" ;; esac
done

echo
echo "=== side by side (targets for imsgw: >= 250000 relayed pkt/s per core, <= 80 KiB per call)"
python3 - "$dir" "${counts[@]}" <<'PY'
import json, sys, os
d, counts = sys.argv[1], sys.argv[2:]
head = ("gateway", "N", "echoing", "relayed/s", "cores", "pkt/s/core", "RSS KiB/call",
        "PSS KiB/call", "200 p50/p99 ms", "echo p50/p99 ms", "loss %")
rows = [head]
for n in counts:
    for label in ("imsgw", "kamailio-rtpengine"):
        p = os.path.join(d, f"{label}-{n}.json")
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            rows.append((label, n, "-", "-", "-", "-", "-", "-", "-", "-", "-"))
            continue
        r = json.load(open(p))
        s, su, w, l = r.get("server") or {}, r["setup"], r["window"], r["loss"]
        ms = lambda x: f"{x['p50_us']/1000:.1f}/{x['p99_us']/1000:.1f}"
        rows.append((label, n, f"{r['echoing']}/{r['calls']}", f"{w['relayed_per_s']:.0f}",
                     f"{s.get('cores', 0):.3f}", f"{s.get('relayed_per_core_s', 0):.0f}",
                     f"{s.get('rss_per_call_kib', 0):.1f}", f"{s.get('pss_per_call_kib', 0):.1f}",
                     ms(su["invite_to_200"]), ms(su["invite_to_first_echo"]), f"{l['loss_pct']:.3f}"))
widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
for r in rows:
    print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
PY
