#!/usr/bin/env bash
# Install the Debian packages vlm needs (only those missing), then configure and
# build. Usage: scripts/setup.sh [BUILD_DIR [extra cmake args...]]
# VLM_SKIP_APT=1 skips the package step (machines without a registry).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true

pkgs=(build-essential cmake pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev libcjson-dev
      libutf8proc-dev libdnnl-dev libwebp-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ -z "${VLM_SKIP_APT:-}" ]; then
  echo "vlm setup: installing ${missing[*]}"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
grep -E '^-- vlm:' "$build.configure.log" || true
cmake --build "$build" -j"$(nproc)"
