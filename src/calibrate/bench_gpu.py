#!/usr/bin/env python3
"""Measure GPU kernels for `coex calibrate` (written by `coex calibrate --emit-bench gpu`).

Writes a tidy measurement CSV (op, metric, value, repeats, std, mode, device, source, group)
that `coex calibrate --measurements FILE` reads unchanged.

Timing: CUDA events around batches of back-to-back calls (each batch >= --min-batch-ms),
after warm-up; the value is the median per-call time over --batches batches, the std their
spread. Modes: eager (one PyTorch call per op: includes host dispatch) and graph (the calls
captured once in a CUDA graph and replayed: no host dispatch).

usage: python3 bench.py [--out measurements.csv] [--modes eager,graph] [--batches 5]
"""
import argparse
import csv
import statistics
import sys

import torch
import torch.nn.functional as F

DT = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# (group, coex op spec) pairs; edit to taste. Specs are coex one-line op specs.
SHAPES = [
    ("gemm", "gemm m=%d n=%d k=%d dtype=%s" % (m, n, k, d))
    for d in ("fp16", "fp32")
    for (m, n, k) in [(1, 4096, 4096), (128, 4096, 4096), (1024, 1024, 1024),
                      (4096, 4096, 4096), (8192, 8192, 8192), (2048, 768, 3072)]
] + [
    ("conv", "conv2d n=%d c=%d h=%d w=%d k=%d r=%d s=%d stride=%d pad=%d dtype=%s" % (*s, d))
    for d in ("fp16", "fp32")
    for s in [(1, 64, 56, 56, 64, 3, 3, 1, 1), (32, 64, 56, 56, 64, 3, 3, 1, 1),
              (32, 256, 14, 14, 1024, 1, 1, 1, 0)]
] + [
    ("attention", "attention b=%d heads=%d seq=%d head_dim=%d causal=%s dtype=fp16" % s)
    for s in [(1, 32, 1024, 128, "false"), (8, 12, 2048, 64, "true"), (1, 32, 4096, 128, "false")]
]


def parse(spec):
    words = spec.split()
    kv = dict(w.split("=", 1) for w in words[1:])
    return words[0], kv


def make(spec, dev):
    """A zero-argument callable running the op once, on inputs allocated here."""
    kind, kv = parse(spec)
    dt = DT[kv.get("dtype", "fp16")]
    i = lambda k, d=0: int(kv.get(k, d))
    if kind == "gemm":
        a = torch.randn(i("m"), i("k"), device=dev, dtype=dt)
        b = torch.randn(i("k"), i("n"), device=dev, dtype=dt)
        return lambda: torch.matmul(a, b)
    if kind == "conv2d":
        x = torch.randn(i("n", 1), i("c"), i("h"), i("w"), device=dev, dtype=dt)
        g = i("groups", 1)
        w = torch.randn(i("k"), i("c") // g, i("r"), i("s", i("r")), device=dev, dtype=dt)
        if dt != torch.float32:
            x = x.to(memory_format=torch.channels_last)
            w = w.to(memory_format=torch.channels_last)
        return lambda: F.conv2d(x, w, stride=i("stride", 1), padding=i("pad"), groups=g)
    if kind == "attention":
        b, h, s, d = i("b", 1), i("heads"), i("seq"), i("head_dim")
        q = torch.randn(b, h, s, d, device=dev, dtype=dt)
        k = torch.randn(b, h, s, d, device=dev, dtype=dt)
        v = torch.randn(b, h, s, d, device=dev, dtype=dt)
        causal = kv.get("causal", "false") == "true"
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    raise ValueError("no benchmark for op kind %r" % kind)


def time_batch(run, calls):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run(calls)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000.0 / calls  # us per call


def measure(fn, mode, batches, min_batch_ms):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    if mode == "graph":
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()

        def run(calls):
            for _ in range(calls):
                graph.replay()
    else:
        def run(calls):
            for _ in range(calls):
                fn()
    calls = 1
    while time_batch(run, calls) * calls < min_batch_ms * 1000.0 and calls < 1 << 16:
        calls *= 2
    per_call = [time_batch(run, calls) for _ in range(batches)]
    return statistics.median(per_call), statistics.pstdev(per_call), calls * batches


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="measurements.csv")
    ap.add_argument("--modes", default="eager,graph")
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--min-batch-ms", type=float, default=2.0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev)
    source = "coex bench.py, PyTorch %s, CUDA %s" % (torch.__version__, torch.version.cuda)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "metric", "value", "repeats", "std", "mode", "device", "source", "group"])
        for group, spec in SHAPES:
            fn = make(spec, dev)
            for mode in args.modes.split(","):
                med, std, reps = measure(fn, mode, args.batches, args.min_batch_ms)
                w.writerow([spec, "latency_us", "%.3f" % med, reps, "%.3f" % std, mode, name, source, group])
                print("%-70s %-5s %10.3f us" % (spec, mode, med), file=sys.stderr)


if __name__ == "__main__":
    main()
