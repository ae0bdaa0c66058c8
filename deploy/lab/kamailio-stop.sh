#!/usr/bin/env bash
# Stop lab Kamailio instances started by kamailio-start.sh.
#
#   kamailio-stop.sh RUNDIR [NAME]
#
# Without NAME: every RUNDIR/*.pid.  SIGTERM to the main process from the pid file,
# wait until it is gone (KAM_STOP_TIMEOUT seconds, default 10), then SIGKILL its
# process group.  Missing or stale pid files are not an error.
set -euo pipefail

if [ "$#" -lt 1 ]; then
	echo "usage: $0 RUNDIR [NAME]" >&2
	exit 2
fi
rundir=$1
if [ "$#" -ge 2 ]; then
	pidfiles=("$rundir/$2.pid")
else
	shopt -s nullglob
	pidfiles=("$rundir"/*.pid)
fi

status=0
for pf in "${pidfiles[@]}"; do
	[ -s "$pf" ] || continue
	pid=$(cat "$pf")
	name=$(basename "$pf" .pid)
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$pf"
		continue
	fi
	# kamailio daemonizes: the main process (pid file) and its children share a
	# process group led by the (exited) creator process
	pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + ${KAM_STOP_TIMEOUT:-10}))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$name (pid $pid) did not exit; killing its process group" >&2
			if [ -n "$pgid" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
				kill -KILL -- "-$pgid" 2>/dev/null || true
			fi
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
			status=1
			break
		fi
		sleep 0.1
	done
	# the children exit after the main process; wait for them (ports are freed then)
	if [ -n "$pgid" ]; then
		deadline=$((SECONDS + 5))
		while :; do
			left=$(pgrep -g "$pgid" kamailio || true)
			[ -z "$left" ] && break
			if [ "$SECONDS" -ge "$deadline" ]; then
				kill -KILL $left 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	fi
	rm -f "$pf" "$rundir/$name.ctl"
done
exit "$status"
