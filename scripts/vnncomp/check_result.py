#!/usr/bin/env python3
"""Checks a VNN-COMP result file the way the competition does, independently of archproof.

usage: check_result.py ONNX VNNLIB RESULTS

For `sat`, the counterexample `((X_0 v) ... (Y_0 v) ...)` is checked: the network is run in
float32 by onnxruntime at X; its output must match the stated Y within 1e-4, and the VNN-LIB
formula (the unsafe set, inputs and outputs) must hold at (X, that output), inputs within 1e-6
and outputs within 1e-4. Exit 0 when the counterexample passes (or the answer carries none:
unsat, timeout, unknown), 1 when it fails, 2 on unreadable input. Needs numpy and onnxruntime
(`python3 -m venv V && V/bin/pip install onnxruntime numpy`).
"""

import gzip
import re
import sys

OUT_TOL = 1e-4
IN_TOL = 1e-6


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.read()


def tokens(text):
    text = re.sub(r";[^\n]*", " ", text)
    return re.findall(r"\(|\)|[^\s()]+", text)


def parse(toks):
    """S-expressions as nested lists."""
    stack, out = [], []
    for t in toks:
        if t == "(":
            stack.append(out)
            out = []
        elif t == ")":
            done = out
            out = stack.pop()
            out.append(done)
        else:
            out.append(t)
    return out


def value(term, env):
    if isinstance(term, list):
        op, args = term[0], [value(a, env) for a in term[1:]]
        if op == "+":
            return sum(args)
        if op == "-":
            return args[0] - sum(args[1:]) if len(args) > 1 else -args[0]
        if op == "*":
            p = 1.0
            for a in args:
                p *= a
            return p
        raise ValueError(f"unsupported term {term}")
    if term in env:
        return env[term]
    return float(term)


def holds(f, env):
    op = f[0]
    if op == "and":
        return all(holds(g, env) for g in f[1:])
    if op == "or":
        return any(holds(g, env) for g in f[1:])
    if op in ("<=", ">=", "<", ">"):
        a, b = value(f[1], env), value(f[2], env)
        names = [t for t in re.findall(r"[XY]_\d+", str(f))]
        tol = OUT_TOL if any(n.startswith("Y") for n in names) else IN_TOL
        return a - b <= tol if op in ("<=", "<") else b - a <= tol
    raise ValueError(f"unsupported formula {f}")


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    onnx_path, vnnlib_path, results_path = sys.argv[1:]
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"error: {e}; install onnxruntime and numpy", file=sys.stderr)
        return 2
    try:
        result = read_text(results_path).strip()
        spec = parse(tokens(read_text(vnnlib_path)))
    except (OSError, ValueError, IndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not result.startswith("sat"):
        print(f"{result.split()[0] if result else 'empty'}: no counterexample to check")
        return 0
    pairs = dict(re.findall(r"\(\s*([XY]_\d+)\s+([^\s()]+)\s*\)", result))
    xs = sorted((int(k[2:]), float(v)) for k, v in pairs.items() if k.startswith("X_"))
    ys = sorted((int(k[2:]), float(v)) for k, v in pairs.items() if k.startswith("Y_"))
    if not xs or [i for i, _ in xs] != list(range(len(xs))):
        print("fail: the result's X values are missing or not numbered 0..n-1")
        return 1
    if onnx_path.endswith(".gz"):
        model = gzip.open(onnx_path, "rb").read()
    else:
        model = onnx_path
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    x = np.array([v for _, v in xs], dtype=np.float32)
    if int(np.prod(shape)) != x.size:
        print(f"fail: {x.size} X values for an input of shape {shape}")
        return 1
    y = sess.run(None, {inp.name: x.reshape(shape)})[0].astype(np.float64).ravel()
    for j, v in ys:
        if j >= y.size or abs(y[j] - v) > OUT_TOL:
            print(f"fail: Y_{j} is {y[j] if j < y.size else 'absent'} in float32, the result says {v}")
            return 1
    env = {f"X_{i}": float(v) for i, v in enumerate(x)}
    env.update({f"Y_{j}": float(v) for j, v in enumerate(y)})
    asserts = [s[1] for s in spec if isinstance(s, list) and s and s[0] == "assert"]
    if not all(holds(a, env) for a in asserts):
        print("fail: the float32 output is not in the unsafe set (or X is outside the box)")
        return 1
    print(f"pass: {len(xs)} inputs in the box, float32 outputs in the unsafe set within {OUT_TOL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
