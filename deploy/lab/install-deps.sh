#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian machine, only what is missing:
# Kamailio (the IMS side), sipp, openssl, Chromium (browser tests), baresip and sox (the media
# tests: baresip-core is the IMS-side phone with real audio, sox makes and measures tones); then
# the tests' npm packages with `npm ci`.
# Run as root (or with sudo available). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(kamailio kamailio-websocket-modules kamailio-tls-modules kamailio-utils-modules
	kamailio-extra-modules kamailio-outbound-modules sip-tester openssl curl chromium
	baresip-core sox)
missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "installing Debian packages: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's package starts nothing here (no systemd), but make sure no stray system instance
# holds the lab's ports: the lab never uses /etc/kamailio or port 5060.

for d in tests server/tests/oidc; do
	if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules" ]; then
		echo "installing npm packages for $d/ (npm ci)"
		(cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
	fi
done
