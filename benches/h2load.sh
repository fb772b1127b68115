#!/usr/bin/env bash
# Cross-checks the gateway benchmark with h2load, a load generator that is
# not tonic: installs h2load (Debian's nghttp2-client) when it is missing,
# then runs the gateway benchmark, whose section 6 drives the gateway's
# replay path and the bare tonic echo with h2load (4 connections x 16
# streams) beside its own tonic client.
#
# The benchmark writes the request body h2load sends (a 5-byte gRPC frame
# header + the encoded ImportSharedSessionRequest) to
# $TMPDIR/dsg-bench-import-request.bin and prints the exact h2load command.
#
#   benches/h2load.sh                       # full run (a few minutes)
#   DSG_BENCH_SMOKE=1 benches/h2load.sh     # seconds, numbers meaningless
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v h2load >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nghttp2-client >/dev/null
  else
    echo "h2load is missing: sudo apt-get install nghttp2-client" >&2
    exit 1
  fi
fi
h2load --version | head -1 >&2

exec cargo bench --bench gateway --locked --quiet
