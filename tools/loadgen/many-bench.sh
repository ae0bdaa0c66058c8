#!/usr/bin/env bash
# Issue 11 §2: 19,500 registered WebSockets through one imsgw, as many as one process may hold
# here (20,000 descriptors a process). Two load processes of 9,750 clients (the same limit binds
# them), each client with its own token, through imsgw to one Kamailio registrar; they hold 40 s,
# un-register and close. Prints imsgw's flows, RSS and CPU every 2 s and each tool's report:
# (RSS with all held - RSS at start) / 19,500 is the memory per registered connection.
# Bounded: 240 s at most.
#
#   tools/loadgen/many-bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BENCH_DIR:-$(mktemp -d /tmp/imsgw-many.XXXXXX)}
mkdir -p "$dir"
echo "bench dir: $dir"
n=19500
. tools/loadgen/common.sh
many_gateway many
echo "imsgw baseline RSS $(rss)"
common=(--url ws://127.0.0.1:8380/sip --count 9750 --concurrency 200 --pidfile $dir/imsgw.pid --hold 40 --time-limit 240
  --mint-key-dir $dir/keys-many --issuer http://127.0.0.1:8380 --audience sip:ims.example --scope sip --token-ttl 900 --unregister)
"$load" "${common[@]}" --user-prefix a --source-ips 127.1.0.1-127.1.0.200 > $dir/a.report 2>&1 &
a=$!
"$load" "${common[@]}" --user-prefix b --source-ips 127.2.0.1-127.2.0.200 > $dir/b.report 2>&1 &
b=$!
for t in $(seq 1 60); do
  sleep 2
  flows=$(curl -s http://127.0.0.1:8380/metrics | awk '/^imsgw_ws_flows / { print $2 }')
  echo "t=$((t*2))s flows=$flows RSS $(rss) CPU $(awk '{ printf "%.1f", ($14+$15)/100 }' /proc/$pid/stat)s"
  kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null || break
done
wait $a || true; wait $b || true
grep -vE "^JSON" $dir/a.report | grep -E "connect|register|latency|registrations" ; grep -vE "^JSON" $dir/b.report | grep -E "connect|register|latency|registrations"
echo "after: RSS $(rss)"
