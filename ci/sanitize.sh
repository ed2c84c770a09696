#!/usr/bin/env bash
# Sanitizers and fuzzing: builds diyc once more with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer into build-san/ (or $DIYC_SAN_BUILD_DIR),
# the libFuzzer targets of fuzz/ included, then
#  1. runs the C++ tests there (ctest) with LeakSanitizer on and UBSan
#     halting on the first report;
#  2. runs each fuzz target for $DIYC_FUZZ_SECONDS (default 20) seconds on
#     a copy of its seed corpus (fuzz/corpus/<target>), $DIYC_FUZZ_PARALLEL
#     (default: the number of cores) at a time, and prints the executions of
#     each.
# Exits non-zero on any test failure, sanitizer report or fuzzer crash.
# Crash inputs are saved as $build/fuzz-crashes/<target>-crash-<sha1>: add
# each to fuzz/corpus/<target>/ as a regression seed once it is fixed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DIYC_SAN_BUILD_DIR:-$root/build-san}
seconds=${DIYC_FUZZ_SECONDS:-20}
parallel=${DIYC_FUZZ_PARALLEL:-$(nproc)}

echo "== Sanitizer build ($build: clang, ASan+UBSan, fuzz targets)"
if [[ ! -f $build/build.ninja ]]; then
  # -O1 and line tables only: sanitizer reports keep file:line stacks, and
  # the build takes about half as long as with -O2 -g.
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DDIYC_SANITIZE=ON -DDIYC_FUZZ=ON -DDIYC_BUILD_TESTS=ON -DDIYC_BUILD_PYTHON=OFF
fi
start=$SECONDS
cmake --build "$build" -j"$(nproc)"
echo "sanitizer build: $((SECONDS - start)) s"

export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "== C++ tests under ASan+UBSan+LSan (ctest)"
ctest --test-dir "$build" --output-on-failure -j2

echo "== Fuzzing: ${seconds} s per target"
work=$(mktemp -d "$( [[ -d /dev/shm ]] && echo /dev/shm || echo /tmp )/diyc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
crashes=$build/fuzz-crashes
mkdir -p "$crashes"
targets=()
for dir in "$root"/fuzz/corpus/*/; do
  targets+=("$(basename "$dir")")
done

fuzz_one() {
  local target=$1 dir=$work/$1
  mkdir -p "$dir/corpus" "$dir/tmp"
  cp "$root/fuzz/corpus/$target/"* "$dir/corpus/"
  # -timeout: an input running 10 s is a hang. The targets keep their
  # scratch files under TMPDIR, which this script removes.
  local status=0
  TMPDIR=$dir/tmp "$build/fuzz/$target" "$dir/corpus" -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$crashes/$target-" >"$dir/log" 2>&1 || status=$?
  echo "$status" >"$dir/status"
}

running=0
for target in "${targets[@]}"; do
  if ((running >= parallel)); then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$target" &
  running=$((running + 1))
done
wait

failed=()
total=0
printf '%-14s %12s %10s\n' target executions exec/s
for target in "${targets[@]}"; do
  log=$work/$target/log
  # libFuzzer's final line: "#N DONE cov: ... exec/s: R rss: ...".
  runs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE .*/\1/p' "$log" | tail -n1)
  rate=$(sed -n 's/^#[0-9]*[[:space:]]*DONE .*exec\/s: \([0-9]*\).*/\1/p' "$log" | tail -n1)
  printf '%-14s %12s %10s\n' "$target" "${runs:--}" "${rate:--}"
  total=$((total + ${runs:-0}))
  if [[ $(cat "$work/$target/status") != 0 ]]; then
    failed+=("$target")
  fi
done
printf '%-14s %12s\n' total "$total"

if ((${#failed[@]})); then
  for target in "${failed[@]}"; do
    echo "== $target failed; the end of its log:" >&2
    tail -n 60 "$work/$target/log" >&2
  done
  echo "fuzzing found crashes in: ${failed[*]} (inputs in $crashes)" >&2
  exit 1
fi
