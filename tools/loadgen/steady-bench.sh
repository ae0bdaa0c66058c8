#!/usr/bin/env bash
# Issue 11 §2, the steady state: 19,500 registered WebSockets (two load processes of 9,750, the
# descriptor limit binds them too), each client with its own token, through imsgw to the lab's
# Kamailio registrar; each client refreshes its registration at nine tenths of its expiry
# (--expires 120, so every 108 s; EXPIRES sets it) while sipp sends MESSAGEs from the IMS side through Kamailio
# to random users at a trickle (MSG_RATE, default 20/s). Prints imsgw's flows, RSS and CPU every
# 10 s, each tool's report (REGISTER p50/p99 of the ramp and of the refreshes, MESSAGEs
# answered) and sipp's count of MESSAGEs answered 200 (all of them, or the run says which not).
# Bounded: HOLD + 120 s.
#
#   tools/loadgen/steady-bench.sh [HOLD_SECONDS]      (default 250: two refreshes per client)
set -euo pipefail
cd "$(dirname "$0")/../.."
hold=${1:-250}
rate=${MSG_RATE:-20}
dir=${BENCH_DIR:-$(mktemp -d /tmp/imsgw-steady.XXXXXX)}
mkdir -p "$dir"
echo "bench dir: $dir"
n=19500
per=$((n / 2))
. tools/loadgen/common.sh
many_gateway steady
cpu() { awk '{ printf "%.1f", ($14+$15)/100 }' /proc/$pid/stat; }
echo "imsgw baseline RSS $(rss)"
common=(--url ws://127.0.0.1:8380/sip --count $per --concurrency 200 --pidfile $dir/imsgw.pid
  --hold "$hold" --time-limit $((hold + 100)) --expires "${EXPIRES:-120}" --refresh
  --mint-key-dir $dir/keys-steady --issuer http://127.0.0.1:8380 --audience sip:ims.example --scope sip
  --token-ttl 900 --unregister)
"$load" "${common[@]}" --user-prefix a --source-ips 127.1.0.1-127.1.0.200 > $dir/a.report 2>&1 &
a=$!
"$load" "${common[@]}" --user-prefix b --source-ips 127.2.0.1-127.2.0.200 > $dir/b.report 2>&1 &
b=$!
# The MESSAGE trickle starts once the ramp is over and stops 30 s before the hold ends.
{
	echo RANDOM
	for i in $(seq 0 $((per - 1))); do echo "a$i;"; echo "b$i;"; done
} > $dir/users.csv
messages=$((rate * (hold - 60)))
(
	sleep 30
	sipp -sf tools/loadgen/message-trickle.xml -inf $dir/users.csv -r "$rate" -m "$messages" \
		-i 127.0.0.1 -p 5390 -t u1 -nostdin -timeout $((hold)) -trace_screen \
		-screen_file $dir/sipp-screen.log 127.0.0.1:5370 >$dir/sipp.out 2>&1
	echo $? >$dir/sipp.rc
) &
s=$!
t=0
while kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null; do
	sleep 10
	t=$((t + 10))
	flows=$(curl -s http://127.0.0.1:8380/metrics | awk '/^imsgw_ws_flows / { print $2 }')
	echo "t=${t}s flows=$flows RSS $(rss) CPU $(cpu)s"
done
wait $a || true
wait $b || true
wait $s || true
for r in a b; do
	echo "-- load process $r"
	grep -vE "^JSON" $dir/$r.report | grep -E "connect |register |registrations/s|latency|refresh|requests answered|dropped|memory per"
done
echo "-- sipp (IMS side): $messages MESSAGEs at $rate/s, exit $(cat $dir/sipp.rc 2>/dev/null || echo '?')"
grep -E "Successful call|Failed call" $dir/sipp-screen.log | tail -2 || true
echo "after: RSS $(rss), CPU $(cpu)s"
