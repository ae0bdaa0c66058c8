#!/usr/bin/env bash
# The WAF memory benchmark (issue 9 §1): see tools/wafbench/README.md.
#
#   tools/wafbench/run.sh [--count N] [--out report.json] ...     (--help lists the options)
#
# Uses the release binary (IMSGW_BIN, default target/release/imsgw; build it first with
# `cargo build --release -p imsgw`) and the interop tests' Node packages (tests/node_modules).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -d "$repo/tests/node_modules/oidc-provider" ]; then
	echo "wafbench: the tests' Node packages are missing: (cd tests && npm ci)" >&2
	exit 2
fi
exec node "$repo/tools/wafbench/wafbench.mjs" "$@"
