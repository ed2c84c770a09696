#!/usr/bin/env bash
# The main job: installs what is missing, builds diyc, and shows it at work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "the demo creates namespaces and links: run as root (sudo $0)" >&2
  exit 1
fi
"$root/ci/install-deps.sh"
"$root/ci/build.sh"
PYTHONPATH="$root/bindings/python" /usr/bin/python3 "$root/ci/demo.py"
