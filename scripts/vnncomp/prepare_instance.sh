#!/usr/bin/env bash
# VNN-COMP tool interface: prepare_instance.sh v1 <category> <onnx> <vnnlib>
# Stops archproof processes left over from an earlier instance and checks that both files are
# there (gzip-compressed files, as later competitions ship them, are read by run_instance.sh).
set -euo pipefail
if [ "${1:-}" != "v1" ] || [ $# -ne 4 ]; then
    echo "usage: $0 v1 <category> <onnx> <vnnlib>" >&2
    exit 1
fi
pkill -x archproof 2>/dev/null || true
for f in "$3" "$4"; do
    [ -f "$f" ] || { echo "$f: no such file" >&2; exit 1; }
done
