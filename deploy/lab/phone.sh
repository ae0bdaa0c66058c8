#!/usr/bin/env bash
# An IMS-side phone for the lab: baresip (Debian baresip-core) registered straight at the lab's
# Kamailio as sip:tone@ims.example, answering every call by itself and playing a 440 Hz tone
# (what it hears is recorded under $LAB_DIR/phone/snd/). Driven over ctrl_tcp (127.0.0.1:5096).
#   deploy/lab/phone.sh start             start it (deploy/lab/up.sh does)
#   deploy/lab/phone.sh call sip:alice@ims.example   make it call you (you hear its tone)
#   deploy/lab/phone.sh hangup | stop
set -euo pipefail
cd "$(dirname "$0")/../.."
lab=${LAB_DIR:-/tmp/imsgw-lab}
dir="$lab/phone"
ctrl=5096

send() { # one ctrl_tcp command (netstring JSON), prints baresip's answer
	local j="{\"command\":\"$1\",\"params\":\"${2:-}\",\"token\":\"lab\"}"
	python3 - "$ctrl" "$j" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
j = sys.argv[2].encode()
s.sendall(str(len(j)).encode() + b":" + j + b",")
buf = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    buf += d
    # answers and events are netstrings; stop at the one that answers us
    if b'"response":true' in buf:
        break
print(buf.decode(errors="replace"))
PY
}

case "${1:-}" in
start)
	if [ -s "$lab/phone.pid" ] && kill -0 "$(cat "$lab/phone.pid")" 2>/dev/null; then
		echo "phone already running (pid $(cat "$lab/phone.pid"))"
		exit 0
	fi
	mkdir -p "$dir/snd"
	# 8 kHz mono for G.711/G.722 calls; opus calls take 48 kHz stereo (aufile needs the codec's rate).
	sox -n -r 8000 -c 1 -b 16 "$dir/tone.wav" synth 600 sine 440 vol 0.5
	cat >"$dir/config" <<CFG
poll_method	epoll
sip_listen	127.0.0.1:5094
net_interface	127.0.0.1
audio_player	aubridge,nil
audio_source	aubridge,nil
audio_alert	aubridge,nil
rtp_ports	30400-30499
statmode_default	off
module_path	/usr/lib/baresip/modules
module	g711.so
module	g722.so
module	aufile.so
module	aubridge.so
module	sndfile.so
snd_path	$dir/snd
module_tmp	account.so
module_app	menu.so
module_app	ctrl_tcp.so
ctrl_tcp_listen	127.0.0.1:$ctrl
CFG
	echo "<sip:tone@ims.example>;outbound=\"sip:127.0.0.1:5070;transport=udp\";regint=600;answermode=auto;audio_codecs=PCMA/8000/1,PCMU/8000/1;audio_source=aufile,$dir/tone.wav" >"$dir/accounts"
	: >"$dir/contacts"
	baresip -f "$dir" >"$lab/phone.log" 2>&1 &
	echo $! >"$lab/phone.pid"
	for _ in $(seq 1 50); do
		grep -q "tone@ims.example: {0/UDP/v4} 200 OK" "$lab/phone.log" 2>/dev/null && break
		sleep 0.2
	done
	grep -q "200 OK" "$lab/phone.log" || { echo "the phone did not register:" >&2; tail -n 20 "$lab/phone.log" >&2; exit 1; }
	echo "phone sip:tone@ims.example registered (log: $lab/phone.log)"
	;;
call) send dial "${2:?a SIP URI to call, e.g. sip:alice@ims.example}" ;;
hangup) send hangup ;;
stop)
	if [ -s "$lab/phone.pid" ]; then
		kill -TERM "$(cat "$lab/phone.pid")" 2>/dev/null || true
		rm -f "$lab/phone.pid"
	fi
	;;
*)
	sed -n 2,7p "$0" >&2
	exit 2
	;;
esac
