#!/usr/bin/env bash
# diyc's benchmark suite, one command:
#
#   sudo bench/run.sh [--quick] [--sizes 10,100,500,1000] [--out bench/results]
#
# Runs bench/bench.py with Debian's /usr/bin/python3 and the diyc package
# from bindings/python. It builds nothing: when the binaries are missing it
# says to run ci/build.sh. `bench/run.sh --help` lists every option.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DIYC_BUILD_DIR:-$root/build}
python=/usr/bin/python3

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  PYTHONPATH=$root/bindings/python exec "$python" "$root/bench/bench.py" --help
fi
if ((EUID != 0)); then
  echo "bench: run as root (sudo bench/run.sh ...): it creates namespaces, links and containers" >&2
  exit 2
fi

missing=()
for binary in server/diycd server/diyc-init; do
  [[ -x $build/$binary ]] || missing+=("$build/$binary")
done
compgen -G "$root/bindings/python/diyc/_diyc*.so" >/dev/null || missing+=("bindings/python/diyc/_diyc*.so")
[[ -d $root/bindings/python/diyc/v1 ]] || missing+=("bindings/python/diyc/v1 (generated gRPC code)")
if ((${#missing[@]})); then
  printf 'bench: missing %s\n' "${missing[@]}" >&2
  echo "bench: build diyc first: sudo ci/build.sh" >&2
  exit 2
fi

export PYTHONPATH=$root/bindings/python${PYTHONPATH:+:$PYTHONPATH}
export DIYC_BUILD_DIR=$build
exec "$python" "$root/bench/bench.py" "$@"
