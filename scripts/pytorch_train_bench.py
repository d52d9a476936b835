#!/usr/bin/env python3
"""PyTorch mirrors of archproof's small trainable networks, and their training throughput.

`archproof bench train --baseline pytorch --python PATH` runs this script with a Python that
has torch, alternating with its own measurement, and compares. The networks are the same as
archproof's zoo and NAS-Bench-201 builders (same layers, same order, same parameter count:
archproof checks the count this script prints). The measurement is the same protocol as
archproof's: random inputs in [0, 1) of shape [batch, 1, 16, 16], labels i mod classes,
Adam (lr 1e-3); a forward pass in evaluation mode, and a training step (forward in training
mode, cross-entropy, backward, Adam step), each repeated for about SECONDS after one warm-up.

    python3 pytorch_train_bench.py --model resnet-tiny --batch-size 64 --seconds 5 --threads 2

prints one JSON object: model, params, threads, forward_images_per_s, train_images_per_s.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(cin, cout, k, s, p, bias):
    return nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)


class CnnTiny(nn.Module):
    """archproof's cnn-tiny: three 3x3 conv-ReLU layers (8, 16, 32; strides 1, 2, 2) with
    biases, a 64-wide ReLU layer and the classifier."""

    def __init__(self, cin, hw, classes):
        super().__init__()
        layers, c = [], cin
        for out, s in [(8, 1), (16, 2), (32, 2)]:
            layers += [conv(c, out, 3, s, 1, True), nn.ReLU()]
            c = out
            hw = (hw + 2 - 3) // s + 1
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(c * hw * hw, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


class BasicBlock(nn.Module):
    """torchvision's basic block, with a 1x1 projection where stride or width changes."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = conv(cin, planes, 3, stride, 1, False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1, False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(conv(cin, planes, 1, stride, 0, False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(y + s)


class SmallResNet(nn.Module):
    """archproof's resnet-tiny (stem stride 1; blocks 16/1, 32/2, 64/2)."""

    def __init__(self, cin, classes, stem_stride=1, blocks=((16, 1), (32, 2), (64, 2))):
        super().__init__()
        c = blocks[0][0]
        self.conv1 = conv(cin, c, 3, stem_stride, 1, False)
        self.bn1 = nn.BatchNorm2d(c)
        layers = []
        for planes, s in blocks:
            layers.append(BasicBlock(c, planes, s))
            c = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def parse_cell(text):
    """A NAS-Bench-201 cell string as {(j, i): op}."""
    edges = {}
    for j, group in enumerate(text.strip().split("+"), start=1):
        for i, item in enumerate(group.strip("|").split("|")):
            op, frm = item.split("~")
            if op not in OPS or int(frm) != i:
                raise SystemExit(f"not a NAS-Bench-201 cell: {text}")
            edges[(j, i)] = op
    return edges


class ReLUConvBN(nn.Module):
    def __init__(self, cin, cout, k, s):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), conv(cin, cout, k, s, (k - 1) // 2, False),
                                nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.op(x)


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


class Cell(nn.Module):
    def __init__(self, edges, c):
        super().__init__()
        self.edges = nn.ModuleDict()
        for (j, i), op in edges.items():
            self.edges[f"{j}<-{i}"] = {
                "none": lambda: Zero(),
                "skip_connect": lambda: nn.Identity(),
                "nor_conv_1x1": lambda: ReLUConvBN(c, c, 1, 1),
                "nor_conv_3x3": lambda: ReLUConvBN(c, c, 3, 1),
                "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
            }[op]()

    def forward(self, x):
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[f"{j}<-{i}"](nodes[i]) for i in range(j)))
        return nodes[3]


class Reduction(nn.Module):
    """NAS-Bench-201's residual reduction block."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), conv(cin, cout, 1, 1, 0, False))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Nb201Network(nn.Module):
    """NAS-Bench-201's TinyNetwork (C = 16, N = 5) around one cell."""

    def __init__(self, cell, cin, classes, c=16, n=5):
        super().__init__()
        edges = parse_cell(cell)
        self.stem = nn.Sequential(conv(cin, c, 3, 1, 1, False), nn.BatchNorm2d(c))
        cells = []
        for stage in range(3):
            width = c << stage
            if stage > 0:
                cells.append(Reduction(width // 2, width))
            cells += [Cell(edges, width) for _ in range(n)]
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c << 2), nn.ReLU())
        self.classifier = nn.Linear(c << 2, classes)

    def forward(self, x):
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build(name, cin, hw, classes):
    if name == "cnn-tiny":
        return CnnTiny(cin, hw, classes)
    if name == "resnet-tiny":
        return SmallResNet(cin, classes)
    if name == "resnet-mini":
        return SmallResNet(cin, classes, stem_stride=2, blocks=((8, 1), (16, 2)))
    if name.startswith("nb201:"):
        return Nb201Network(name[len("nb201:"):], cin, classes)
    raise SystemExit(f"no PyTorch mirror of '{name}' (cnn-tiny, resnet-tiny, resnet-mini, "
                     "nb201:<cell>)")


def rate(step, batch, seconds):
    step()
    start, images = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or images == 0:
        step()
        images += batch
    return images / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--params-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build(a.model, 1, 16, a.classes)
    params = sum(p.numel() for p in model.parameters())
    out = {"model": a.model, "params": params, "threads": torch.get_num_threads(),
           "torch": torch.__version__}
    if not a.params_only:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(a.batch_size, 1, 16, 16, generator=g)
        y = torch.arange(a.batch_size) % a.classes
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def forward():
            with torch.no_grad():
                model(x)

        def train():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        model.eval()
        out["forward_images_per_s"] = rate(forward, a.batch_size, a.seconds)
        model.train()
        out["train_images_per_s"] = rate(train, a.batch_size, a.seconds)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
