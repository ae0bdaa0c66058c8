#!/usr/bin/env bash
# Start one lab Kamailio instance in the background, everything under RUNDIR.
#
#   kamailio-start.sh NAME CFG RUNDIR [-A DEFINE ...] [other kamailio options]
#
# Creates RUNDIR/NAME.pid, RUNDIR/NAME.log (stderr log) and the control socket
# RUNDIR/NAME.ctl (kamcmd -s unix:RUNDIR/NAME.ctl ul.dump); waits until the
# control socket answers.  Extra arguments are passed to kamailio as they are, e.g.
#   -A IMS_PORT=5072 -A WITH_TLS -A 'TLS_CERT="/tmp/x/server.pem"' --debug=3
# Environment: KAM_SHM_MB (default 64), KAM_PKG_MB (default 8), KAM_LOG_LEVEL
# (default 2, passed as -A LOG_LEVEL=N), KAM_START_TIMEOUT seconds (default 10).
set -euo pipefail

if [ "$#" -lt 3 ]; then
	echo "usage: $0 NAME CFG RUNDIR [kamailio args...]" >&2
	exit 2
fi
name=$1
cfg=$2
rundir=$3
shift 3

mkdir -p "$rundir"
rundir=$(cd "$rundir" && pwd)
cfg=$(cd "$(dirname "$cfg")" && pwd)/$(basename "$cfg")
pidfile=$rundir/$name.pid
logfile=$rundir/$name.log
ctl=$rundir/$name.ctl

if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	echo "$name already running (pid $(cat "$pidfile"))" >&2
	exit 1
fi
rm -f "$pidfile" "$ctl"

args=(-f "$cfg" -P "$pidfile" -E -Y "$rundir" -w "$rundir"
	-m "${KAM_SHM_MB:-64}" -M "${KAM_PKG_MB:-8}"
	-A "CTL_SOCK=\"unix:$ctl\"" -A "LOG_LEVEL=${KAM_LOG_LEVEL:-2}" "$@")

if ! kamailio "${args[@]}" -c >"$rundir/$name.check.log" 2>&1; then
	echo "$name: config check failed:" >&2
	tail -n 20 "$rundir/$name.check.log" >&2
	exit 1
fi

# -E: the daemonized processes keep logging to stderr, i.e. to the log file
if ! kamailio "${args[@]}" >>"$logfile" 2>&1 </dev/null; then
	echo "$name: kamailio failed to start; log tail:" >&2
	tail -n 30 "$logfile" >&2
	exit 1
fi

deadline=$((SECONDS + ${KAM_START_TIMEOUT:-10}))
while :; do
	if [ -s "$pidfile" ] && [ -S "$ctl" ] && kamcmd -s "unix:$ctl" core.version >/dev/null 2>&1; then
		break
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "$name: did not come up within ${KAM_START_TIMEOUT:-10}s; log tail:" >&2
		tail -n 30 "$logfile" >&2
		exit 1
	fi
	sleep 0.1
done
echo "$name started: pid $(cat "$pidfile"), ctl unix:$ctl, log $logfile"
