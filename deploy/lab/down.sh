#!/usr/bin/env bash
# Stops what deploy/lab/up.sh started, by pid file.
set -euo pipefail
cd "$(dirname "$0")/../.."
lab=${LAB_DIR:-/tmp/imsgw-lab}
if [ -s "$lab/imsgw.pid" ]; then
	pid=$(cat "$lab/imsgw.pid")
	if kill -TERM "$pid" 2>/dev/null; then
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$lab/imsgw.pid"
fi
if [ -s "$lab/demo-idp.pid" ]; then
	kill -TERM "$(cat "$lab/demo-idp.pid")" 2>/dev/null || true
	rm -f "$lab/demo-idp.pid"
fi
deploy/lab/phone.sh stop || true
deploy/lab/kamailio-stop.sh "$lab" ims || true
echo "lab stopped"
