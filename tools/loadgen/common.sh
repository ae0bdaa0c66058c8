# Shared by the benchmark scripts in this folder (sourced, not run): the release build, the run
# directory, the Kamailio registrar, starting imsgw and waiting for it, and the cleanup trap.
# Needs `dir` (the run directory) and `n` (clients, for Kamailio's shared memory) set first.

cargo build --release --locked -q -p imsgw -p imsgw-loadgen
bin=${CARGO_TARGET_DIR:-target}/release
load=$bin/imsgw-loadgen

cleanup() {
	[ -s "$dir/imsgw.pid" ] && kill -TERM "$(cat "$dir/imsgw.pid")" 2>/dev/null || true
	deploy/lab/kamailio-stop.sh "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Kamailio needs shared memory for N registrations (and, as an edge, ~80 KiB per connection).
shm=$(( 256 + n / 10 ))
edge_shm=$(( 256 + n * 100 / 1024 ))
registrar() {
	KAM_LOG_LEVEL=1 KAM_SHM_MB=$shm deploy/lab/kamailio-start.sh ims deploy/lab/kamailio-ims.cfg "$dir" \
		-A IMS_PORT=5370 -A IMS_TLS_PORT=5371 >/dev/null
}

# start_imsgw CONFIG LOG URL: imsgw in the background (pid in $dir/imsgw.pid), then waits for
# URL/healthz; fails after 5 s.
start_imsgw() {
	"${IMSGW:-$bin/imsgw}" serve --config "$1" >"$2" 2>&1 &
	echo $! >"$dir/imsgw.pid"
	for _ in $(seq 1 50); do
		curl -fsS "$3/healthz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "imsgw did not answer /healthz within 5 s; see $2" >&2
	exit 1
}

# imsgw_toml NAME DANGER [WEBSOCKET LINES...]: writes $dir/imsgw.toml for a bench gateway on
# 127.0.0.1:8380 (SIP 5362) in front of the registrar, its keys and state in $dir/keys-NAME and
# $dir/state-NAME, sip.danger_allow_unauthenticated = DANGER, and the given [websocket] lines.
imsgw_toml() {
	local name=$1 danger=$2
	shift 2
	{
		cat <<TOML
[http]
listen = "127.0.0.1:8380"
[sip]
domain = "ims.example"
listen = "127.0.0.1:5362"
upstream = "sip:127.0.0.1:5370;transport=udp"
danger_allow_unauthenticated = $danger
[websocket]
TOML
		printf '%s\n' "$@"
		cat <<TOML
[waf]
issuer = "http://127.0.0.1:8380"
key_dir = "$dir/keys-$name"
state_dir = "$dir/state-$name"
audience = "sip:ims.example"
scope = "sip"
[log]
filter = "warn"
TOML
	} >"$dir/imsgw.toml"
}

# many_gateway NAME: the registrar with room for 19,500 registrations and imsgw in front of it
# with room for 19,600 WebSockets and no per-address caps (the load comes from 400 addresses);
# sets pid and rss().
many_gateway() {
	KAM_LOG_LEVEL=1 KAM_SHM_MB=2560 deploy/lab/kamailio-start.sh ims deploy/lab/kamailio-ims.cfg "$dir" \
		-A IMS_PORT=5370 -A IMS_TLS_PORT=5371 >/dev/null
	imsgw_toml "$1" false "max_connections = 19600" "max_connections_per_address = 0" \
		"max_unregistered_per_address = 0"
	start_imsgw "$dir/imsgw.toml" "$dir/imsgw.log" http://127.0.0.1:8380
	pid=$(cat "$dir/imsgw.pid")
}
rss() { awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' /proc/$pid/status; }
