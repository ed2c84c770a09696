#!/usr/bin/env bash
# The main job: installs what is missing, builds diyc, starts diycd, creates
# a network with the command line, attaches two namespaces and shows them
# pinging each other; then removes everything it made.
#
# It runs its own diycd on a private socket, state directory and nftables
# table, so it never disturbs a diycd already serving on this host.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "the demo creates namespaces, links and firewall rules: run as root (sudo $0)" >&2
  exit 1
fi
"$root/ci/install-deps.sh"
"$root/ci/build.sh"

work=$(mktemp -d /tmp/diyc-demo.XXXXXX)
tag=dm$(( $$ % 10000 ))
export DIYC_SOCKET=$work/run/diyc.sock
export PYTHONPATH=$root/bindings/python
diyc() { echo "+ python3 -m diyc $*" >&2; /usr/bin/python3 -m diyc "$@"; }

cleanup() {
  set +e
  /usr/bin/python3 -m diyc network rm "$tag" --force >/dev/null 2>&1
  [[ -n ${diycd_pid:-} ]] && kill "$diycd_pid" 2>/dev/null && wait "$diycd_pid" 2>/dev/null
  ip netns del "$tag-a" 2>/dev/null
  ip netns del "$tag-b" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting diycd on $DIYC_SOCKET"
"$root/build/server/diycd" --socket "$DIYC_SOCKET" --state-dir "$work/state" --nft-table "diyc_$tag" \
  2> >(sed 's/^/   [diycd] /' >&2) &
diycd_pid=$!
for _ in $(seq 100); do [[ -S $DIYC_SOCKET ]] && break; sleep 0.05; done

echo "== a network and two namespaces"
diyc network create "$tag" --subnet 10.199.0.0/24
ip netns add "$tag-a"
ip netns add "$tag-b"
diyc attach "$tag" --netns "$tag-a"
diyc attach "$tag" --netns "$tag-b" --ip 10.199.0.50
diyc network ls
diyc attachment ls "$tag"

echo "== every attachment pings every other one"
diyc probe --network "$tag" --count 3
echo "== and the gateway, from inside $tag-a"
diyc probe --netns "$tag-a" 10.199.0.1

echo "== tearing down"
diyc detach "$tag" --netns "$tag-a"
diyc network rm "$tag" --force
echo "demo finished: diycd attached two namespaces that reach each other"
