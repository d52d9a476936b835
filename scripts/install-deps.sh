#!/usr/bin/env bash
# Installs the system packages the build needs, from Debian's archive, if any is missing:
#   cmake, g++        HiGHS is built from source by the `highs` crate (good_lp's MILP back end)
#   libclang-dev      bindgen, used by the build scripts of z3-sys and highs-sys
#   libz3-dev         the Z3 library and headers the `z3` crate (pinned to 0.19.5) links against
#   pkg-config        finds Z3
set -euo pipefail
packages=(cmake g++ libclang-dev libz3-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing system packages: ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
