#!/usr/bin/env bash
# VNN-COMP tool interface: run_instance.sh v1 <category> <onnx> <vnnlib> <results> <timeout>
# Writes the competition's result file: `sat` and the counterexample as
# `((X_0 v) ... (Y_0 v) ...)`, or `unsat`, `timeout`, `unknown`, or `error` when the files
# cannot be read. The binary is $ARCHPROOF if set, else the release build of this checkout.
set -uo pipefail
if [ "${1:-}" != "v1" ] || [ $# -ne 6 ]; then
    echo "usage: $0 v1 <category> <onnx> <vnnlib> <results> <timeout>" >&2
    exit 1
fi
onnx="$3" vnnlib="$4" results="$5" timeout="$6"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${ARCHPROOF:-${CARGO_TARGET_DIR:-$root/target}/release/archproof}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unpack() { # a .gz file is decompressed next to the others, keeping its extension
    case "$1" in
        *.gz) local out="$work/$(basename "${1%.gz}")"; gunzip -c "$1" > "$out"; echo "$out" ;;
        *) echo "$1" ;;
    esac
}
onnx="$(unpack "$onnx")" vnnlib="$(unpack "$vnnlib")"
if ! "$bin" verify --net "$onnx" --spec "$vnnlib" --timeout "$timeout" \
    --vnncomp-out "$results" --force --no-proof --quiet >/dev/null; then
    echo "error" > "$results"
fi
exit 0
