#!/usr/bin/env bash
# The main job: installs what is missing, builds diyc, starts diycd, creates
# a network with the command line, attaches two namespaces and shows them
# pinging each other; then imports a busybox image, runs two containers on
# the same network and a third one in the foreground that pings them both;
# then removes everything it made.
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
# Runs the command line, showing the command first (arguments with spaces or
# shell characters in single quotes, as one would type them).
diyc() {
  local shown=() arg
  for arg in "$@"; do
    if [[ $arg =~ [[:space:]\"\'\$\&\;\|\<\>] ]]; then shown+=("'$arg'"); else shown+=("$arg"); fi
  done
  echo "+ python3 -m diyc ${shown[*]}" >&2
  /usr/bin/python3 -m diyc "$@"
}

quiet() { /usr/bin/python3 -m diyc "$@" >/dev/null 2>&1; }
# The address of a container on its first network, from `inspect --json`.
address_of() {
  /usr/bin/python3 -m diyc --json inspect "$1" |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["attachments"][0]["ip"].split("/")[0])'
}

cleanup() {
  set +e
  if [[ -z ${finished:-} ]]; then
    # Containers outlive diycd: remove them (and so their image) while it runs.
    quiet rm --force "$tag-web"
    quiet rm --force "$tag-db"
    quiet rm --force "$tag-ping"
    quiet image rm busybox
    quiet network rm "$tag" --force
  fi
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

echo "== an image: a busybox root filesystem, imported into diycd"
diyc image busybox "$work/rootfs"
diyc image import busybox "$work/rootfs"
diyc image ls

echo "== two containers on $tag, in the background"
diyc run -d --name "$tag-web" --network "$tag" busybox sleep 300
diyc run -d --name "$tag-db" --network "$tag:10.199.0.60" busybox sleep 300
diyc ps
web=$(address_of "$tag-web")

echo "== a third container, in the foreground, pings both (diyc exits with its exit code)"
diyc run --rm --name "$tag-ping" --network "$tag" busybox sh -c "ping -c 2 $web && ping -c 2 10.199.0.60"
echo "== $tag-web as diycd describes it"
diyc inspect --json "$tag-web"

echo "== tearing down"
# `sleep` as a container's first process has no SIGTERM handler, so stop
# ends it with SIGKILL once the grace period is over.
diyc stop "$tag-web" --time 1
diyc stop "$tag-db" --time 1
diyc ps -a
diyc rm "$tag-web"
diyc rm "$tag-db"
diyc image rm busybox
diyc detach "$tag" --netns "$tag-a"
diyc network rm "$tag" --force
finished=1
echo "demo finished: two namespaces and three containers on one diycd network reached each other"
