#!/usr/bin/env bash
# CI smoke run of the benchmark: quick mode into a temporary folder.
# Fails on any error or failed check (ping between attached namespaces,
# leftovers on the host), never on slow timings.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d /tmp/diyc-bench-smoke.XXXXXX)}
"$root/bench/run.sh" --quick --out "$out"
echo "bench-smoke: results in $out"
