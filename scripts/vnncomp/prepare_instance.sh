#!/usr/bin/env bash
# VNN-COMP tool interface: prepare_instance.sh v1 <category> <onnx> <vnnlib>
# Checks that both files are there; nothing needs preparing (gzip-compressed files, as later
# competitions ship them, are read by run_instance.sh, and every run ends at its own timeout,
# so no process outlives its instance).
set -euo pipefail
if [ "${1:-}" != "v1" ] || [ $# -ne 4 ]; then
    echo "usage: $0 v1 <category> <onnx> <vnnlib>" >&2
    exit 1
fi
for f in "$3" "$4"; do
    [ -f "$f" ] || { echo "$f: no such file" >&2; exit 1; }
done
