#!/usr/bin/env bash
# Brings up the lab on loopback: Kamailio as the IMS side (P-CSCF + registrar, UDP/TCP on
# 127.0.0.1:5070) and imsgw in front of it (WebSocket SIP on 127.0.0.1:8080, SIP on 5062).
# Everything runs under LAB_DIR (default /tmp/imsgw-lab); stop it with deploy/lab/down.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
lab=${LAB_DIR:-/tmp/imsgw-lab}
mkdir -p "$lab"

deploy/lab/install-deps.sh
echo "building imsgw (cargo build --release)"
cargo build --release --locked -q -p imsgw

if [ -s "$lab/imsgw.pid" ] && kill -0 "$(cat "$lab/imsgw.pid")" 2>/dev/null; then
	echo "imsgw already running (pid $(cat "$lab/imsgw.pid")); run deploy/lab/down.sh first" >&2
	exit 1
fi
KAM_LOG_LEVEL=${KAM_LOG_LEVEL:-1} deploy/lab/kamailio-start.sh ims deploy/lab/kamailio-ims.cfg "$lab"

# The WAF's signing keys live with the rest of the lab's state.
export IMSGW_WAF__KEY_DIR="$lab/keys"
"$repo/target/release/imsgw" serve --config deploy/lab/imsgw.lab.toml >"$lab/imsgw.log" 2>&1 &
echo $! >"$lab/imsgw.pid"
for _ in $(seq 1 50); do
	if curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$(cat "$lab/imsgw.pid")" 2>/dev/null; then
		echo "imsgw did not start:" >&2
		tail -n 20 "$lab/imsgw.log" >&2
		exit 1
	fi
	sleep 0.2
done

cat <<MSG

The lab is up.
  imsgw        ws://127.0.0.1:8080/sip   (SIP over WebSocket, subprotocol "sip")
               http://127.0.0.1:8080/healthz, http://127.0.0.1:8080/metrics
               log: $lab/imsgw.log
  IMS side     Kamailio at sip:127.0.0.1:5070 (UDP/TCP), domain ims.example
               bindings: kamcmd -s unix:$lab/ims.ctl ul.dump

REGISTER needs an RFC 8898 Bearer token for the identity (sign-in through the WAF arrives
with the web client; until then an operator mints one):
  IMSGW_WAF__KEY_DIR=$lab/keys target/release/imsgw token mint \\
      --config deploy/lab/imsgw.lab.toml --impu sip:alice@ims.example
Then register any SIP-over-WebSocket client (JsSIP with authorization_jwt, a softphone with
WS and Bearer support) at ws://127.0.0.1:8080/sip as sip:alice@ims.example. A quick check:
  TOKEN=\$(IMSGW_WAF__KEY_DIR=$lab/keys target/release/imsgw token mint \\
      --config deploy/lab/imsgw.lab.toml --impu sip:alice@ims.example) \\
    NODE_PATH=tests/node_modules node deploy/lab/ws-sip-probe.js ws://127.0.0.1:8080/sip alice
Stop everything with: deploy/lab/down.sh
MSG
