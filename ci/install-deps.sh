#!/usr/bin/env bash
# Installs every Debian package diyc needs to build, test and demo.
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libnl-3-dev libnl-route-3-dev libabsl-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libnftables-dev nftables libseccomp-dev
  pybind11-dev python3-pybind11 python3-dev python3-pytest python3-grpcio python3-protobuf
  libgtest-dev libgmock-dev
  iproute2 iputils-ping busybox-static openssl nlohmann-json3-dev iptables
  containernetworking-plugins runc python3-matplotlib
  golang-go golang-github-appc-cni-dev podman conmon
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "diyc: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
