"""Attribute completion against the most-frequent-value guess, on held-out facts.

    python benchmarks/bench_completion.py --build data/builds/fashion44k --checkpoint RUN

Embeds the build with the checkpoint (train facts only, reused when already there), then for
the ten properties with the most items among those with at least three values, ranks every
held-out test fact's values with the stored LPM vectors and the value prior (exactly what
`k3m query complete` does; its weight chosen on the valid facts) and compares precision@1
with always guessing the property's most frequent value, and with the LPM distance alone.
Target: on average at least 10 points above the guess, and never below it. Writes
``benchmarks/results/completion_<build>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="data/builds/fashion44k")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--properties", type=int, default=10)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from etl.catalog_build import CatalogBuild
    from k3m.embedding import EmbedSettings, embed_build
    from k3m.query.complete import Completer

    torch.set_num_threads(args.threads)
    build = CatalogBuild.open(args.build)
    store, report = embed_build(args.checkpoint, args.build, EmbedSettings(facts="train"))
    triples = np.asarray(build.triples)
    train = triples[np.asarray(build.triple_split) == 0]
    items = {p: len(np.unique(train[train[:, 1] == p, 0])) for p in np.unique(train[:, 1]).tolist()}
    values = {p: len(np.unique(train[train[:, 1] == p, 2])) for p in items}
    chosen = sorted((p for p in items if values[p] >= 3), key=lambda p: -items[p])[: args.properties]
    rows = []
    for p in chosen:
        # the shipped ranking (with the value prior, its weight chosen on valid facts) and the
        # LPM distance alone, on the same test facts
        ranked = Completer(store, build, build.properties[p])
        facts, p1, hits, majority = ranked.heldout((2,), 3, 4096)
        _, p1_lpm, _, _ = Completer(store, build, build.properties[p], prior=False).heldout((2,), 3, 4096)
        rows.append({"property": build.properties[p], "items": items[p], "values": values[p], "heldout_facts": facts,
                     "precision_at_1": p1, "hits_at_3": hits, "majority_precision_at_1": majority,
                     "lead_pp": None if p1 is None else 100 * (p1 - majority),
                     "prior_weight": ranked.prior_weight, "calibration_facts": ranked.calibration_facts,
                     "lpm_alone_precision_at_1": p1_lpm})
    leads = [r["lead_pp"] for r in rows if r["lead_pp"] is not None]
    result = {"benchmark": "completion", "build": args.build, "checkpoint": str(args.checkpoint), "embeddings": report.as_dict(),
              "properties": rows, "mean_lead_pp": float(np.mean(leads)), "min_lead_pp": float(np.min(leads)),
              "target": ">= 10 pp on average, never below the guess",
              "met": bool(np.mean(leads) >= 10 and np.min(leads) >= 0),
              "machine": describe(("torch",)) | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}}
    out = Path(args.out or REPO / "benchmarks" / "results" / f"completion_{Path(args.build).name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['property']:<22} p@1 {100 * (r['precision_at_1'] or 0):5.1f}  guess {100 * (r['majority_precision_at_1'] or 0):5.1f}  "
              f"LPM alone {100 * (r['lpm_alone_precision_at_1'] or 0):5.1f}  prior weight {r['prior_weight']:g}  "
              f"({r['heldout_facts']} facts)")
    print(f"mean lead {result['mean_lead_pp']:+.1f} pp, min {result['min_lead_pp']:+.1f} pp -> {out}")


if __name__ == "__main__":
    main()
