#!/usr/bin/env bash
# Builds cnitool (the CNI project's reference command-line client) into
# $DIYC_BUILD_DIR/tools/cnitool (default build/tools/cnitool), offline:
# third_party/cnitool/cnitool.go compiled with Debian's golang-go against
# Debian's libcni (golang-github-appc-cni-dev) in GOPATH mode. Does nothing
# when the binary is newer than its source. Prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DIYC_BUILD_DIR:-$root/build}
src=$root/third_party/cnitool/cnitool.go
out=$build/tools/cnitool
libcni=/usr/share/gocode/src/github.com/containernetworking/cni/libcni

if [[ -x $out && $out -nt $src ]]; then
  echo "$out"
  exit 0
fi
if ! command -v go >/dev/null || [[ ! -d $libcni ]]; then
  echo "cnitool needs Debian's golang-go and golang-github-appc-cni-dev (ci/install-deps.sh)" >&2
  exit 1
fi

# A private GOPATH holds the main package; Debian's tree supplies libcni.
gopath=$build/tools/gopath
mkdir -p "$gopath/src/cnitool" "$build/tools"
cp "$src" "$gopath/src/cnitool/cnitool.go"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$build/tools/gocache" \
  GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
  go build -trimpath -o "$out.tmp" cnitool
mv "$out.tmp" "$out"
echo "$out"
