#!/usr/bin/env bash
# Fuzzes every parser of user files with cargo fuzz (libFuzzer), each target for SECONDS
# (default 600), starting from seed corpora made of real files: the reference data in
# ../shared/data where it is present, the project's search spaces, and small networks and
# datasets written for the purpose. A crash stops the script with the failing input under
# fuzz/artifacts/TARGET/; make it a regression test before fixing it.
#
#   scripts/fuzz.sh              every target, 600 s each
#   scripts/fuzz.sh 30 nnet idx  two targets, 30 s each
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(onnx vnnlib nnet ir_json layer_list evonorm_layer deepmad_structure deepmad_space
        cell_space benchmark_table instance_list idx cifar csv_dataset npy)
fi
cache="$HOME/.cache/archproof"
fuzz_target_dir="${FUZZ_TARGET_DIR:-$cache/fuzz-target}"
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked --quiet cargo-fuzz --version 0.13.2
fi
# Without a sanitizer, cargo fuzz works on the stable toolchain.
fuzz=(cargo fuzz run --sanitizer none --target x86_64-unknown-linux-gnu --release
    --target-dir "$fuzz_target_dir")
cargo fuzz build --sanitizer none --target x86_64-unknown-linux-gnu --release \
    --target-dir "$fuzz_target_dir"

seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
shared=../shared/data
put() { # put TARGET FILE...: copies the files that exist into the target's seeds
    local t="$1"
    shift
    mkdir -p "$seeds/$t"
    local f
    for f in "$@"; do [ -f "$f" ] && cp "$f" "$seeds/$t/" || true; done
}
put onnx "$shared"/acasxu/onnx/ACASXU_run2a_1_{1,9}_batch_2000.onnx
put nnet "$shared"/acasxu/nnet/ACASXU_run2a_1_{1,9}_batch_2000.nnet
put vnnlib "$shared"/acasxu/vnnlib/prop_{1,2,3,5,6,7,10}.vnnlib "$shared"/mnistfc/prop_0_0.03.vnnlib
put layer_list "$shared"/dlv/mlp_2x20x20x2.json
put deepmad_structure "$shared"/deepmad/released_structures.json "$shared"/deepmad/resnet50_analog.json
put deepmad_space search-spaces/deepmad-*.toml
put cell_space search-spaces/nb201.toml search-spaces/nasnet.toml
put instance_list "$shared"/acasxu/instances.csv "$shared"/acasxu/expected.csv \
    "$shared"/mnistfc/mnistfc_instances.csv "$shared"/mnistfc/expected.csv
mkdir -p "$seeds/benchmark_table"
[ -f "$shared/nb201/nb201-cifar10.csv" ] &&
    head -40 "$shared/nb201/nb201-cifar10.csv" >"$seeds/benchmark_table/nb201-head.csv"
# Networks and layers archproof writes itself, when its binary is built.
bin="${CARGO_TARGET_DIR:-$cache/target}/release/archproof"
mkdir -p "$seeds/ir_json" "$seeds/evonorm_layer"
if [ -x "$bin" ]; then
    "$bin" export mlp:4-8-3 --format json -o "$seeds/ir_json/mlp.json" --force >/dev/null || true
    "$bin" export resnet-mini:4 --input 1x8x8 --classes 3 --format json \
        -o "$seeds/ir_json/resnet-mini.json" --force >/dev/null || true
    for layer in evonorm-b0 evonorm-s0 bn-relu; do
        "$bin" evonorm show "$layer" --json >"$seeds/evonorm_layer/$layer.show.json" || true
        python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["graph"]))' \
            "$seeds/evonorm_layer/$layer.show.json" >"$seeds/evonorm_layer/$layer.json" || true
        rm -f "$seeds/evonorm_layer/$layer.show.json"
    done
    "$bin" export mlp:4-8-3 --init-seed 1 --format onnx -o "$seeds/onnx/mlp.onnx" --force >/dev/null || true
fi
# Small datasets in each format (written by the standard library, no NumPy needed).
python3 - "$seeds" <<'PY'
import os, struct, sys
root = sys.argv[1]
def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)
put("idx", "images", struct.pack(">HBB3I", 0, 8, 3, 2, 2, 2) + bytes(range(8)))
put("idx", "labels", struct.pack(">HBBI", 0, 8, 1, 3) + bytes([0, 9, 4]))
put("cifar", "batch", b"".join(bytes([k]) + bytes([k * 20] * 3072) for k in range(3)))
put("csv_dataset", "rows.csv", b"0.1,0.2,0\n0.3,0.4,1\n0.5,0.6,2\n1,2,0\n3,4,1\n")
def npy(descr, shape, body):
    head = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    head += " " * (63 - (10 + len(head)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode() + body
put("npy", "u8.npy", npy("|u1", "(2, 3)", bytes(range(6))))
put("npy", "f32.npy", npy("<f4", "(3,)", struct.pack("<3f", 0.5, -1.0, 2.0)))
put("npy", "i64.npy", npy("<i8", "(2,)", struct.pack("<2q", 1, 7)))
PY

failed=()
for t in "${targets[@]}"; do
    corpus="$cache/fuzz-corpus/$t"
    mkdir -p "$corpus" "$seeds/$t"
    echo "fuzz $t: ${secs} s from $(ls "$seeds/$t" | wc -l) seeds and $(ls "$corpus" | wc -l) corpus entries"
    log="$seeds/$t.log"
    status=0
    "${fuzz[@]}" "$t" "$corpus" "$seeds/$t" -- -max_total_time="$secs" -max_len=262144 \
        -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss|Done |SUMMARY)" "$log" || true
    if ((status != 0)); then
        grep -E "panicked|ERROR|==[0-9]+==|Test unit written|artifact_prefix" "$log" | head -20 >&2
        echo "fuzz $t: failed (exit $status); the input is under fuzz/artifacts/$t" >&2
        failed+=("$t")
    fi
done
if ((${#failed[@]})); then
    echo "fuzzing found failing inputs for: ${failed[*]}" >&2
    exit 1
fi
