#!/usr/bin/env bash
# Prove the lab without imsgw: kamailio-ims (UDP/TCP/TLS) + kamailio-ws-edge, sipp
# scenarios from tests/sipp, node probes.  Needs kamailio (+ websocket, tls, outbound
# modules), sipp, openssl, node; the WebSocket part needs the npm package "ws" in
# $WS_NODE_PATH (default: installs it into the run dir with npm).
#
#   deploy/lab/selftest.sh [RUNDIR]      (default: a new mktemp dir; kept for the logs)
# Ports: 5070/5071 ims, 5080/8090 ws-edge, 5093-5099 probes, 16000-16300 sipp media.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sipp_dir=$(cd "$here/../../tests/sipp" && pwd)
R=${1:-$(mktemp -d /tmp/imsgw-lab.XXXXXX)}
mkdir -p "$R"
R=$(cd "$R" && pwd)
cd "$R"
fails=0
ok() { echo "PASS: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
cleanup() { "$here/kamailio-stop.sh" "$R" || true; }
trap cleanup EXIT

sippr() { # NAME ARGS... : run a bounded sipp client against ims UDP unless args say otherwise
	local name=$1
	shift
	sipp "$@" -m 1 -timeout 20 -timeout_error -nostdin -trace_err -error_file "$R/$name.err" >"$R/$name.out" 2>&1
}
has() { # FILE REGEX (grep without a pipe)
	grep -E -- "$2" "$1" >/dev/null 2>&1
}

"$here/make-tls-cert.sh" "$R/tls" >/dev/null
"$here/kamailio-start.sh" ims "$here/kamailio-ims.cfg" "$R" -A FR_TIMER=2000 -A WITH_TLS \
	-A "TLS_CERT=\"$R/tls/server.pem\"" -A "TLS_KEY=\"$R/tls/server.key\"" -A "TLS_CA=\"$R/tls/ca.pem\""
"$here/kamailio-start.sh" ws-edge "$here/kamailio-ws-edge.cfg" "$R"
ims=127.0.0.1:5070

# 1. OPTIONS to the server
if sippr options -sf "$sipp_dir/uac-options.xml" -p 5094 $ims; then ok "OPTIONS 200"; else bad "OPTIONS"; fi

# 2. UDP: register alice with a Path to 5099, ul.dump shows it, INVITE arrives at 5099 with that Route
if sippr reg-udp -sf "$sipp_dir/register-with-path.xml" -s alice -key path "sip:abc@127.0.0.1:5099;lr;ob" \
	-key contact "sip:alice@127.0.0.1:5099;ob" -key expires 600 \
	-key instance 00000000-0000-4000-8000-000000000001 -p 5098 -trace_logs -log_file "$R/reg-udp.log" $ims
then ok "REGISTER with Path (udp)"; else bad "REGISTER with Path (udp)"; fi
kamcmd -s "unix:$R/ims.ctl" ul.dump >"$R/uldump.txt"
if has "$R/uldump.txt" 'Path: <sip:abc@127.0.0.1:5099;lr;ob>'; then ok "ul.dump shows Path"; else bad "ul.dump Path"; fi

sipp -sf "$sipp_dir/uas.xml" -p 5099 -mp 16200 -m 1 -timeout 20 -timeout_error -nostdin \
	-trace_msg -message_file "$R/uas-udp.msg" >"$R/uas-udp.out" 2>&1 &
uas=$!
sleep 0.5
if sippr call-udp -sf "$sipp_dir/uac-invite.xml" -s alice -p 5097 -mp 16000 $ims; then ok "call (udp)"; else bad "call (udp)"; fi
if wait "$uas"; then ok "uas (udp) done"; else bad "uas (udp)"; fi
if has "$R/uas-udp.msg" '^Route: <sip:abc@127.0.0.1:5099;lr;ob>'; then ok "INVITE at 5099 carries Route <sip:abc@127.0.0.1:5099;lr;ob>"; else bad "Route at UAS (udp)"; fi

sipp -sf "$sipp_dir/uas.xml" -p 5099 -mp 16200 -m 1 -timeout 20 -timeout_error -nostdin >"$R/uas-msg.out" 2>&1 &
uas=$!
sleep 0.5
if sippr message -sf "$sipp_dir/uac-message.xml" -s alice -p 5096 $ims; then ok "MESSAGE 200"; else bad "MESSAGE"; fi
wait "$uas" || bad "uas (message)"

# 3. TCP: same with ;transport=tcp (Kamailio opens a new TCP connection to 5099)
if sippr reg-tcp -sf "$sipp_dir/register-with-path.xml" -t t1 -s bob -key path "sip:tok1@127.0.0.1:5099;lr;ob;transport=tcp" \
	-key contact "sip:bob@127.0.0.1:5099;transport=tcp;ob" -key expires 600 \
	-key instance 00000000-0000-4000-8000-000000000002 -p 5098 $ims
then ok "REGISTER with Path (tcp)"; else bad "REGISTER with Path (tcp)"; fi
sipp -sf "$sipp_dir/uas.xml" -t t1 -p 5099 -mp 16200 -m 1 -timeout 20 -timeout_error -nostdin \
	-trace_msg -message_file "$R/uas-tcp.msg" >"$R/uas-tcp.out" 2>&1 &
uas=$!
sleep 0.5
if sippr call-tcp -sf "$sipp_dir/uac-invite.xml" -t t1 -s bob -p 5097 -mp 16000 $ims; then ok "call (tcp)"; else bad "call (tcp)"; fi
if wait "$uas"; then ok "uas (tcp) done"; else bad "uas (tcp)"; fi
if has "$R/uas-tcp.msg" '^Route: <sip:tok1@127.0.0.1:5099;lr;ob;transport=tcp>'; then ok "INVITE over tcp carries Route"; else bad "Route at UAS (tcp)"; fi

# 4. error codes: 404 unknown user, 430/503 from downstream pass back, 408 on silence
if sippr e404 -sf "$sipp_dir/uac-invite-404.xml" -s nobody -p 5095 -mp 16100 $ims; then ok "404 for unknown user"; else bad "404"; fi
# (tm relays a downstream 503 as 500, RFC 3261 16.7)
for pair in 430:430 480:480 503:500; do
	code=${pair%%:*}
	want=${pair##*:}
	sipp -sf "$sipp_dir/uas-reject-$code.xml" -p 5099 -m 1 -timeout 20 \
		-timeout_error -nostdin >"$R/uas-$code.out" 2>&1 &
	uas=$!
	sleep 0.5
	if sippr e$code -sf "$sipp_dir/uac-invite-$want.xml" -s alice -p 5095 -mp 16100 $ims; then ok "callee $code -> caller gets $want"; else bad "$code"; fi
	wait "$uas" || bad "uas-reject $code"
done
# nothing listens on 5099 now: fr_timer (2 s here) -> 408
if sippr e408 -sf "$sipp_dir/uac-invite-408.xml" -s alice -p 5095 -mp 16100 $ims; then ok "408 when the flow is silent"; else bad "408"; fi

# 5. outbound_mode=1: reg-id, 2 Vias, first Path without ;ob -> 439
if sippr reg-noob -sf "$sipp_dir/register-with-path.xml" -s carl -key path "sip:abc@127.0.0.1:5099;lr" \
	-key contact "sip:carl@127.0.0.1:5099;ob" -key expires 600 \
	-key instance 00000000-0000-4000-8000-000000000003 -p 5098 $ims
then bad "REGISTER without ;ob accepted"
elif has "$R/reg-noob.err" 'SIP/2.0 439'; then ok "439 without ;ob"; else bad "439 expected"; fi

# 6. TCP and TLS: which connection Kamailio uses toward the Path URI
node "$here/flow-probe.js" tcp $ims gina 5094 4 >"$R/flow-tcp.out" 2>&1 &
p=$!
sleep 1
sippr e480tcp -sf "$sipp_dir/uac-invite-480.xml" -s gina -p 5095 -mp 16100 $ims || bad "480 via tcp flow probe"
if wait "$p" && has "$R/flow-tcp.out" '^\[inbound\] INVITE'; then ok "tcp: INVITE arrives on a NEW connection to the Path URI"; else bad "tcp flow probe"; fi
node "$here/flow-probe.js" tls 127.0.0.1:5071 hank 5093 4 "$R/tls" >"$R/flow-tls.out" 2>&1 &
p=$!
sleep 1
sippr e480tls -sf "$sipp_dir/uac-invite-480.xml" -s hank -p 5095 -mp 16100 $ims || bad "480 via tls flow probe"
if wait "$p" && has "$R/flow-tls.out" '^\[inbound\] INVITE'; then ok "tls: INVITE arrives on a NEW TLS connection to the Path URI"; else bad "tls flow probe"; fi
printf 'OPTIONS sip:ims.example SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bKssl1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:p@ims.example>;tag=1\r\nTo: <sip:ims.example>\r\nCall-ID: ssl1@selftest\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n' >"$R/opt.txt"
{ cat "$R/opt.txt"; sleep 1; } | timeout 5 openssl s_client -connect 127.0.0.1:5071 -CAfile "$R/tls/ca.pem" \
	-verify_return_error -servername localhost -quiet >"$R/s_client.out" 2>&1 || true
if has "$R/s_client.out" '^SIP/2.0 200 OK'; then ok "TLS listener: verified cert, OPTIONS 200"; else bad "TLS s_client"; fi

# 7. kamailio-ws-edge: REGISTER through the ws edge, a call and a MESSAGE back down the ws, 430 after close
if [ -z "${WS_NODE_PATH:-}" ]; then
	npm install --prefix "$R/npm" --no-audit --no-fund ws@8 >"$R/npm.log" 2>&1
	WS_NODE_PATH=$R/npm/node_modules
fi
if NODE_PATH=$WS_NODE_PATH node "$here/ws-sip-probe.js" ws://127.0.0.1:8090/sip carol >"$R/ws-reg.out" 2>&1 \
	&& has "$R/ws-reg.out" 'Path: <sip:[^@]+@127.0.0.1:5080;lr;ob>'
then ok "ws-edge REGISTER -> 200 with flow-token Path"; else bad "ws-edge REGISTER"; fi
kamcmd -s "unix:$R/ims.ctl" ul.dump >"$R/uldump2.txt"
if has "$R/uldump2.txt" 'Path: <sip:[^@]+@127.0.0.1:5080;lr;ob>'; then ok "ims stored the ws-edge Path"; else bad "ws-edge Path in ul.dump"; fi
NODE_PATH=$WS_NODE_PATH node "$here/ws-sip-probe.js" ws://127.0.0.1:8090/sip dave 5 >"$R/ws-dave.out" 2>&1 &
p=$!
sleep 1
if sippr call-ws -sf "$sipp_dir/uac-invite.xml" -s dave -p 5097 -mp 16000 $ims; then ok "call ims -> ws-edge -> ws client"; else bad "call to ws"; fi
if sippr msg-ws -sf "$sipp_dir/uac-message.xml" -s dave -p 5096 $ims; then ok "MESSAGE to ws client"; else bad "MESSAGE to ws"; fi
if wait "$p"; then ok "ws client saw the call"; else bad "ws client"; fi
# dave's ws is closed now; his binding is still there -> the edge answers 430
if sippr e430ws -sf "$sipp_dir/uac-invite-430.xml" -s dave -p 5095 -mp 16100 $ims; then ok "430 from ws-edge for a closed flow"; else bad "430 from ws-edge"; fi

echo "logs in $R"
if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
