#!/usr/bin/env bash
# The whole test suite: what README.md gives as the test command and what CI runs.
# Installs what it needs (Debian packages, npm packages), then runs, in order:
#   formatting and lints, Rust unit/in-memory/RFC 4475 tests, the fuzz target's build,
#   the web client's build, the interop tests against real Kamailio, sipp and JsSIP and the
#   browser tests of the web client in Chromium (node --test).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
deploy/lab/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --locked --workspace --all-targets -q -- -D warnings

step "cargo test (unit, in-memory edge, RFC 4475, config)"
cargo test --locked --workspace -q

step "fuzz targets build (server/sip/fuzz, server/fuzz)"
# The main target dir: the fuzz crates reuse the workspace's already built dependencies.
cargo build --locked -q --manifest-path server/sip/fuzz/Cargo.toml --target-dir target
cargo build --locked -q --manifest-path server/fuzz/Cargo.toml --target-dir target

step "build imsgw for the interop tests"
cargo build --locked -q -p imsgw

step "build the web client (web/dist) and run its unit tests"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm test)

step "interop tests: JsSIP -> imsgw -> Kamailio <- sipp; browser tests: the WIC in Chromium"
cd tests
IMSGW_BIN="$(cd .. && pwd)/target/debug/imsgw" npm test
