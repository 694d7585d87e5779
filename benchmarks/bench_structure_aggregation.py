"""Benchmark: structure aggregation as one PyG MessagePassing layer vs Python loops.

Same weights, same inputs: 256 items x 10 triples, hidden 768, 8 heads (the base sizes).

- ``pyg``: k3m.model.nn.StructureAggregation, all items at once (torch_geometric.utils.softmax).
- ``loop_original``: the original code's shape, written for this benchmark with the same
  math: a Python loop over items and, inside, over each item's triples
  (t = W1 [c || p || v] per triple, softmax per item, c* = c + W3 sum a t).
- ``loop_per_item``: a kinder loop, one item at a time with its triples stacked.

Outputs must be allclose; the speed ratio loop_original / pyg is the target (goal >= 50x
on the 2-core CPU), reported for a training step (forward + backward, how the original
ran it) and for inference (forward only, no autograd). Both sides do the same matmul
FLOPs (t = W1 [c || p || v] for every triple), so the forward-only ratio is bounded by how
much worse per-triple mat-vecs and per-op Python overhead are than one batched GEMM; the
backward of the loop adds thousands of tiny autograd nodes. Timings are medians over
interleaved repeats (the machine is shared: ratios within one run are what counts).
Writes JSON with the machine described.

    python benchmarks/bench_structure_aggregation.py [--json benchmarks/results/structure_aggregation.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from k3m.model.nn.structure_aggregation import StructureAggregation
from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
GOAL = 50.0


def loop_original(layer: StructureAggregation, c, p, v, counts: list[int]) -> torch.Tensor:
    w1, b1, att, w3 = layer.w1, layer.lin_item.bias, layer.att[0], layer.lin_out.weight
    heads, d = layer.heads, layer.head_dim
    out, start = [], 0
    for i, n in enumerate(counts):
        if n == 0:
            out.append(c[i])
            continue
        ts, scores = [], []
        for j in range(start, start + n):
            t = (w1 @ torch.cat([c[i], p[j], v[j]]) + b1).view(heads, d)
            scores.append((F.leaky_relu(t, layer.negative_slope) * att).sum(-1))
            ts.append(t)
        alpha = torch.softmax(torch.stack(scores), dim=0)  # over the item's triples, per head
        out.append(c[i] + w3 @ (alpha.unsqueeze(-1) * torch.stack(ts)).sum(0).reshape(-1))
        start += n
    return torch.stack(out)


def loop_per_item(layer: StructureAggregation, c, p, v, counts: list[int]) -> torch.Tensor:
    w1, b1, att, w3 = layer.w1, layer.lin_item.bias, layer.att[0], layer.lin_out.weight
    heads, d = layer.heads, layer.head_dim
    out, start = [], 0
    for i, n in enumerate(counts):
        if n == 0:
            out.append(c[i])
            continue
        x = torch.cat([c[i].expand(n, -1), p[start : start + n], v[start : start + n]], dim=1)
        t = (x @ w1.T + b1).view(n, heads, d)
        alpha = torch.softmax((F.leaky_relu(t, layer.negative_slope) * att).sum(-1), dim=0)
        out.append(c[i] + w3 @ (alpha.unsqueeze(-1) * t).sum(0).reshape(-1))
        start += n
    return torch.stack(out)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure(args, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = StructureAggregation(args.hidden, args.heads).eval()
    B, T, H = args.items, args.triples, args.hidden
    counts = [T] * B
    pair_item = torch.arange(B).repeat_interleave(T)
    edge_index = torch.stack([torch.arange(B * T), pair_item])  # value mention j -> its item (the batch graph)
    c, p, v = torch.randn(B, H), torch.randn(B * T, H), torch.randn(B * T, H)

    with torch.no_grad():
        fast = layer((v, c), edge_index, p)
        ref = loop_original(layer, c, p, v, counts)
        ref_item = loop_per_item(layer, c, p, v, counts)
        max_abs = max((fast - ref).abs().max().item(), (fast - ref_item).abs().max().item())
        equal = torch.allclose(fast, ref, atol=1e-4, rtol=1e-4) and torch.allclose(fast, ref_item, atol=1e-4, rtol=1e-4)
        times = {"pyg": [], "loop_original": [], "loop_per_item": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
            times["pyg"] += timed(lambda: layer((v, c), edge_index, p), 3)
            times["loop_original"] += timed(lambda: loop_original(layer, c, p, v, counts), 1)
            times["loop_per_item"] += timed(lambda: loop_per_item(layer, c, p, v, counts), 1)

    def train_step(fn):  # how the original ran it: forward + backward
        layer.zero_grad()
        fn(c.clone().requires_grad_(True)).sum().backward()

    train = {"pyg": [], "loop_original": []}
    for _ in range(max(2, args.repeats // 2)):
        train["pyg"] += timed(lambda: train_step(lambda cc: layer((v, cc), edge_index, p)), 2)
        train["loop_original"] += timed(lambda: train_step(lambda cc: loop_original(layer, cc, p, v, counts)), 1)
    fwd = {k: statistics.median(t) for k, t in times.items()}
    step = {k: statistics.median(t) for k, t in train.items()}
    return {
        "torch_threads": threads,
        "load_average_1m": os.getloadavg()[0],
        "allclose": bool(equal),
        "max_abs_diff": max_abs,
        "forward_seconds_median": fwd,
        "speedup_forward_vs_loop_original": round(fwd["loop_original"] / fwd["pyg"], 1),
        "speedup_forward_vs_loop_per_item": round(fwd["loop_per_item"] / fwd["pyg"], 1),
        "forward_backward_seconds_median": step,
        "speedup_train_vs_loop_original": round(step["loop_original"] / step["pyg"], 1),
        "goal_met_forward": bool(equal and fwd["loop_original"] / fwd["pyg"] >= GOAL),
        "goal_met_train": bool(equal and step["loop_original"] / step["pyg"] >= GOAL),
        "repeats": args.repeats,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--triples", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch intra-op thread counts to run")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "structure_aggregation.json")
    args = parser.parse_args(argv)
    runs = [measure(args, int(n)) for n in args.threads.split(",")]
    result = {
        "benchmark": "structure_aggregation",
        "shape": {"items": args.items, "triples_per_item": args.triples, "hidden": args.hidden, "heads": args.heads},
        "goal_speedup": GOAL,
        "runs": runs,
        "machine": describe(("torch", "torch-geometric")),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
