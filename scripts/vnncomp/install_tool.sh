#!/usr/bin/env bash
# VNN-COMP tool interface: install_tool.sh v1
# Installs the system packages and builds archproof's release binary.
set -euo pipefail
if [ "${1:-}" != "v1" ]; then
    echo "usage: $0 v1 (expected interface version v1, got '${1:-}')" >&2
    exit 1
fi
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
cargo build --release --bin archproof
