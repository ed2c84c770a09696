#!/usr/bin/env bash
# Builds cnitool (the CNI project's reference command-line client) into
# $DIYC_BUILD_DIR/tools/cnitool (default build/tools/cnitool) and prints its
# path. Does nothing once it is built.
#
# Debian's golang-github-appc-cni-dev ships libcni but not the cnitool
# command, whose source is in the same Debian source package. The package is
# fetched from the Debian archive with a private apt source list (the host's
# /etc/apt is left alone; apt checks it against the signed Sources index),
# at exactly the installed libcni's version, and cnitool is compiled with
# Debian's golang-go against Debian's libcni in GOPATH mode, without network.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DIYC_BUILD_DIR:-$root/build}
tools=$build/tools
out=$tools/cnitool
libcni=/usr/share/gocode/src/github.com/containernetworking/cni/libcni
package=golang-github-appc-cni

if [[ -x $out ]]; then
  echo "$out"
  exit 0
fi
if ! command -v go >/dev/null || [[ ! -d $libcni ]]; then
  echo "cnitool needs Debian's golang-go and $package-dev (ci/install-deps.sh)" >&2
  exit 1
fi

version=$(dpkg-query -W -f='${Version}' "$package-dev")
source_dir=$tools/$package-$version
if [[ ! -f $source_dir/cnitool/cnitool.go ]]; then
  # The archive the host's own apt sources name (deb822 or one-line style).
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1)
  [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
  mirror=${mirror:-http://deb.debian.org/debian}
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  apt_dir=$tools/apt
  mkdir -p "$apt_dir/lists/partial" "$source_dir"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename main" >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o APT::Sandbox::User=root -qq)
  apt-get "${apt_opts[@]}" update
  (cd "$apt_dir" && apt-get "${apt_opts[@]}" source --download-only "$package=$version")
  tar -xJf "$apt_dir/${package}_${version%-*}.orig.tar.xz" -C "$source_dir" --strip-components=1 --wildcards '*/cnitool/*'
  rm -rf "$apt_dir"
fi

# A private GOPATH holds the main package; Debian's tree supplies libcni.
gopath=$tools/gopath
mkdir -p "$gopath/src/cnitool"
cp "$source_dir/cnitool/cnitool.go" "$gopath/src/cnitool/cnitool.go"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$tools/gocache" \
  GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
  go build -trimpath -o "$out.tmp" cnitool
mv "$out.tmp" "$out"
echo "$out"
