#!/usr/bin/env bash
# Brings up the lab on loopback: Kamailio as the IMS side (P-CSCF + registrar, UDP/TCP on
# 127.0.0.1:5070), a demo OpenID provider with demo users (127.0.0.1:9400), and imsgw in front
# of Kamailio serving the web client (http://127.0.0.1:8080/, SIP on 5062).
# Everything runs under LAB_DIR (default /tmp/imsgw-lab); stop it with deploy/lab/down.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
lab=${LAB_DIR:-/tmp/imsgw-lab}
mkdir -p "$lab"

deploy/lab/install-deps.sh
echo "building imsgw (cargo build --release)"
cargo build --release --locked -q -p imsgw
if [ -f web/package.json ]; then
	echo "building the web client (web/: npm ci && npm run build)"
	(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi

if [ -s "$lab/imsgw.pid" ] && kill -0 "$(cat "$lab/imsgw.pid")" 2>/dev/null; then
	echo "imsgw already running (pid $(cat "$lab/imsgw.pid")); run deploy/lab/down.sh first" >&2
	exit 1
fi
KAM_LOG_LEVEL=${KAM_LOG_LEVEL:-1} deploy/lab/kamailio-start.sh ims deploy/lab/kamailio-ims.cfg "$lab"

# The demo OpenID provider (a real oidc-provider with a login form that checks passwords).
if ! { [ -s "$lab/demo-idp.pid" ] && kill -0 "$(cat "$lab/demo-idp.pid")" 2>/dev/null; }; then
	idp_cfg=$(node deploy/lab/demo-idp.mjs "$lab" 9400 http://127.0.0.1:8080)
	node tests/lib/idp-server.mjs "$idp_cfg" >"$lab/demo-idp.log" 2>&1 &
	echo $! >"$lab/demo-idp.pid"
	for _ in $(seq 1 50); do
		curl -fsS http://127.0.0.1:9400/.well-known/openid-configuration >/dev/null 2>&1 && break
		sleep 0.2
	done
fi

# The WAF's signing keys and its state (sessions, refresh tokens, revocations) live with the
# rest of the lab's state.
export IMSGW_WAF__KEY_DIR="$lab/keys"
export IMSGW_WAF__STATE_DIR="$lab/state"
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

# An IMS-side phone with a tone to call (and to call you): sip:tone@ims.example.
deploy/lab/phone.sh start

cat <<MSG

The lab is up. Open http://127.0.0.1:8080/ in a browser, press "Sign in", choose
"Demo account" and sign in as alice (password alice-pw) or bob (password bob-pw): the page
shows "Registered" as sip:alice@ims.example. Two browsers (or a private window) can message
and call each other.

Calls with audio: type sip:tone@ims.example in the address field and press Call: the lab's
IMS-side phone (baresip) answers and you hear its 440 Hz tone; it records what it hears under
$lab/phone/snd/. The other way round: deploy/lab/phone.sh call sip:alice@ims.example rings the
page; Answer, and you hear the tone. deploy/lab/phone.sh hangup ends it.

  imsgw        http://127.0.0.1:8080/     (the web client; sign-in; /device for key-pad phones)
               ws://127.0.0.1:8080/sip   (SIP over WebSocket, subprotocol "sip")
               http://127.0.0.1:8080/healthz, http://127.0.0.1:8080/metrics
               log: $lab/imsgw.log
  OpenID       http://127.0.0.1:9400 (demo provider), log: $lab/demo-idp.log
  media        WebRTC on UDP 127.0.0.1:10000, RTP toward the IMS from 127.0.0.1:30000-30199
  IMS side     Kamailio at sip:127.0.0.1:5070 (UDP/TCP), domain ims.example
               phone sip:tone@ims.example (baresip), log: $lab/phone.log
               bindings: kamcmd -s unix:$lab/ims.ctl ul.dump

Without a browser: REGISTER needs an RFC 8898 Bearer token; an operator can mint one:
  IMSGW_WAF__KEY_DIR=$lab/keys target/release/imsgw token mint \\
      --config deploy/lab/imsgw.lab.toml --impu sip:alice@ims.example
Then register any SIP-over-WebSocket client (JsSIP with authorization_jwt, a softphone with
WS and Bearer support) at ws://127.0.0.1:8080/sip as sip:alice@ims.example. A quick check:
  TOKEN=\$(IMSGW_WAF__KEY_DIR=$lab/keys target/release/imsgw token mint \\
      --config deploy/lab/imsgw.lab.toml --impu sip:alice@ims.example) \\
    NODE_PATH=tests/node_modules node deploy/lab/ws-sip-probe.js ws://127.0.0.1:8080/sip alice
Stop everything with: deploy/lab/down.sh
MSG
