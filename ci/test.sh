#!/usr/bin/env bash
# Runs every diyc test, as root: the C++ suites (ctest), the Python suites
# (pytest), a smoke run of the benchmark, then the sanitizer build with its
# tests and the fuzzers (ci/sanitize.sh). Installs what is missing and builds
# first. Exits non-zero if anything fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DIYC_BUILD_DIR:-$root/build}
if [[ $(id -u) -ne 0 ]]; then
  echo "diyc tests create namespaces and links: run as root (sudo $0)" >&2
  exit 1
fi
"$root/ci/install-deps.sh"
"$root/ci/build.sh"
# The CNI tests drive the plugin with cnitool, built from Debian's source.
"$root/ci/build-cnitool.sh" >/dev/null

echo "== C++ tests (ctest)"
ctest --test-dir "$build" --output-on-failure -j2

echo "== Python tests (pytest)"
cd "$root"
PYTHONPATH="$root/bindings/python:$root/bench" /usr/bin/python3 -m pytest pytests bench/tests -q -p no:cacheprovider "$@"

echo "== Benchmark smoke run (fails on errors and wrong results, never on timings)"
"$root/ci/bench-smoke.sh"

"$root/ci/sanitize.sh"
