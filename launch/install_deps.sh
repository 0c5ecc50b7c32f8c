#!/usr/bin/env bash
# install_deps.sh: installs the Debian packages dsv4-calib builds and tests with.
# Idempotent: asks apt-get only for what is missing, so a second run takes a second.
# Usage: bash launch/install_deps.sh   (as root, or with sudo available)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev
  libopenmpi-dev openmpi-bin
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libopenblas-dev liblapacke-dev libpcre2-dev
  # The fuzz harnesses (tests/fuzz/run.sh): clang, its libFuzzer/ASan/UBSan runtimes (only a
  # Recommends of clang, which --no-install-recommends skips) and llvm-symbolizer for stack traces.
  clang libclang-rt-dev llvm
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
