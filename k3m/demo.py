"""The whole story on the embedded defaults (README command 1: `bash scripts/demo.sh`).

catalog → `k3m import` → `k3m kg load` (RDF + embedded graph DB) → SPARQL and Cypher
answers → the frozen encoders' features (MiniLM, EfficientNet) into the feature cache →
short `k3m pretrain` (configs/pretrain_cpu.yaml) → `k3m embed` (build + Item.embedding) → three
`k3m query` scripts → a 2-D projection PNG of the embeddings coloured by category.

Every step is the real command-line tool, printed before it runs, so a reader can repeat
any step by hand. The embedded graph server is started once (`k3m kg serve --detach`) and
stopped at the end, whatever happens in between (one already running is used and left
running). Nothing assumes fashion44k: the example item, the properties shown and
constrained on, and the property completed are picked from the imported catalog itself
(:func:`pick_examples`), so `--source my_catalog.csv --mapping my_mapping.yaml` runs the same
story on any catalog.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

from kg.paths import data_dir, project_root

REPO = Path(__file__).resolve().parents[1]  # the checkout this demo belongs to, wherever it runs from


def default_fashion_dir() -> Path:
    root = Path(os.environ.get("K3M_DATASETS", project_root().parent / "shared" / "datasets"))
    return root / "fashion44k"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh",
        description="Import a catalog, build the KG, pretrain briefly, embed, query: the whole story.",
    )
    parser.add_argument("--source", nargs="+", type=Path, help="catalog files (default: fashion44k's styles.jsonl.gz)")
    parser.add_argument("--mapping", default=None, help="mapping name or YAML file (default: fashion44k)")
    parser.add_argument("--name", default=None, help="name of the build and run (default: from the mapping)")
    # 6 epochs of the 10,000-item slice: the vectors spread (random pairs at cosine 0.34; 0.54
    # after 3 epochs) and the demo stays near 6 minutes on 2 cores
    parser.add_argument("--epochs", type=int, default=6, help="pretraining epochs over the build's train items (default 6)")
    parser.add_argument(
        "--limit", type=int, default=10000,
        help="import only the first N rows (default 10000, so the story fits in 10 minutes on 2 cores; 0 = all)",
    )
    parser.add_argument("--fresh", action="store_true", help="re-import and retrain even if outputs exist")
    parser.add_argument("--out", type=Path, default=None, help="where the PNG and the query answers go (default data/demo)")
    return parser.parse_args(argv)


class Story:
    """Runs the steps as real `k3m` commands and keeps their wall times."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    def run(self, title: str, argv: list[str], capture: bool = False) -> str:
        print(f"\n== {title}\n$ {shlex.join(argv)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, text=True, stdout=subprocess.PIPE if capture else None)
        self.timings[title] = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0:
            raise SystemExit(f"demo: step failed ({title}), exit code {proc.returncode}")
        if capture:
            print(proc.stdout, end="", flush=True)
            return proc.stdout
        return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    k3m = [sys.executable, "-m", "k3m"]
    if args.source is None:
        fashion = default_fashion_dir()
        if not (fashion / "styles.jsonl.gz").is_file():
            print(
                f"demo: no catalog given and fashion44k not found at {fashion}.\n"
                "Point it at the datasets with K3M_DATASETS=/path/to/datasets, or at your own catalog:\n"
                "  bash scripts/demo.sh --source my_catalog.csv --mapping my_mapping.yaml\n"
                "(README: 'Your own catalog: the mapping file').",
                file=sys.stderr,
            )
            return 2
        args.source = [fashion / "styles.jsonl.gz"]
        args.mapping = args.mapping or "fashion44k"
    if args.mapping is None:
        print("demo: --source needs --mapping (a built-in name or a YAML file)", file=sys.stderr)
        return 2
    name = args.name or Path(args.mapping).stem + (f"-{args.limit}" if args.limit else "")
    data = data_dir()
    build = data / "builds" / name
    run_dir = data / "runs" / f"demo-{name}"
    # one graph database per build: items of another catalog never mix into the answers
    db = ["--database", "".join(c if c.isascii() and c.isalnum() else "_" for c in name)[:64]]
    out = args.out or data / "demo"
    out.mkdir(parents=True, exist_ok=True)
    story = Story()

    if args.fresh or not (build / "manifest.json").is_file():
        cmd = [*k3m, "import", *map(str, args.source), "--mapping", args.mapping, "--out", str(build)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        story.run("import the catalog into a catalog build", cmd)
    else:
        print(f"\n== reusing the catalog build {build} (--fresh re-imports)")
    print(json.dumps(json.loads((build / "summary.json").read_text()), indent=1)[:1200])

    from kg import embedded_server

    started_server = embedded_server.running() is None
    if started_server:
        story.run("start the embedded graph database (ArcadeDB over Bolt, 127.0.0.1 only)", [*k3m, "kg", "serve", "--detach"])
    else:
        print("\n== using the embedded graph database already running for this data directory")
    try:
        story.run("load the build into RDF (Oxigraph) and the graph database", [*k3m, "kg", "load", str(build), *db])
        picks = pick_examples(build)
        print(f"\n== examples picked from this catalog: {json.dumps(picks, ensure_ascii=False)}")
        story.run(
            "SPARQL: the five properties with the most triples",
            [*k3m, "kg", "sparql", str(build),
             "SELECT ?property (COUNT(*) AS ?triples) WHERE { ?property a rdf:Property . ?item ?property ?value } "
             "GROUP BY ?property ORDER BY DESC(?triples) LIMIT 5"],
        )
        story.run(
            "Cypher: the triple count",
            [*k3m, "kg", "cypher", "MATCH (:Item)-[h:HAS]->(:Value) RETURN count(h) AS triples", *db],
        )
        story.run(
            f"Cypher (parameterized): the most frequent values of {picks['show']!r}",
            [*k3m, "kg", "cypher",
             "MATCH (i:Item)-[:HAS {property: $p}]->(v:Value) RETURN v.text AS value, count(i) AS items "
             "ORDER BY items DESC LIMIT 5", "--param", f"p={picks['show']}", *db],
        )

        # the demo's own time budget: image features of at most 2 minutes (96 px for 10k items on
        # 2 cores); --epochs is what it trains, also for a small catalog (no min_steps)
        config = [*k3m, "pretrain", "--config", str(REPO / "configs" / "pretrain_cpu.yaml"), "--set", f"build={build}",
                  "--set", "model.image.feature_budget_minutes=2"]
        from etl.catalog_build import CatalogBuild

        train_items = len(CatalogBuild.open(build).item_indices("train"))
        batch = min(256, max(16, train_items // 8))  # a small catalog still takes several steps per epoch
        story.run("frozen encoders' features (MiniLM titles and pairs, EfficientNet images) into the feature cache",
                  [*config, "--features"])
        if args.fresh or not (run_dir / "checkpoints" / "latest").is_file():
            story.run(
                f"pretrain K3M (cpu preset: frozen encoders, {args.epochs} epochs)",
                [*config, "--set", f"run_dir={run_dir}", "--set", f"epochs={args.epochs}", "--set", "min_steps=0",
                 "--set", f"batch_size={batch}",
                 "--set", "eval_every=0",
                 "--set", "checkpoint_every=100000", "--set", "progress=false", "--set", "log_every=10"],
            )
        else:
            print(f"\n== reusing the pretrained run {run_dir} (--fresh retrains)")
        story.run("embed every item (c*) into the build and onto Item nodes",
                  [*k3m, "embed", "--checkpoint", str(run_dir), str(build), *db])

        item = picks["item"]
        story.run(f"query 1: items similar to {item['item_id']} ({item['title']!r})",
                  [*k3m, "query", "similar", item["item_id"], "--k", "5", "--show", picks["show"], *db])
        print(f"\n== how the similarity scores spread (raw cosine of c*; docs/query.md)\n{score_spread(build, item['item_id'])}")
        story.run(f"query 2: similar to {item['item_id']}, same {picks['same']}, same category",
                  [*k3m, "query", "similar", item["item_id"], "--k", "5", "--same", picks["same"],
                   *(["--category", item["category"]] if item["category"] else []), "--show", picks["same"], *db])
        story.run(f"query 3: attribute completion for items lacking {picks['complete']!r} (LPM), "
                  "precision@1 on held-out facts",
                  [*k3m, "query", "complete", "--property", picks["complete"], "--top-k", "3", "--limit", "200", *db])
        story.run("Cypher over the suggestions just written",
                  [*k3m, "kg", "cypher",
                   "MATCH (i:Item)-[s:SUGGESTED_VALUE]->(v:Value) RETURN i.title AS item, s.property AS property, "
                   "v.text AS suggested, s.score AS score ORDER BY s.score LIMIT 5", *db])
        png = out / "embeddings.png"
        _projection(build, png)
        print(f"\n== 2-D projection of the item embeddings coloured by category: {png}")
    finally:
        if started_server:
            subprocess.run([*k3m, "kg", "stop"], check=False)

    total = time.perf_counter() - story.started
    print("\n== timings (s)")
    for title, seconds in story.timings.items():
        print(f"{seconds:8.1f}  {title}")
    print(f"{total:8.1f}  total")
    return 0


def pick_examples(build: Path, min_category_share: float = 0.5) -> dict:
    """What the queries show, taken from the catalog itself (no property name is assumed):

    item      a test-split item (with an image and a title when there are such) in one of the
              most populous categories, with the most facts among those
    show      the property most items have, the one with most distinct values among those
              (printed beside each hit, and its values counted in Cypher)
    same      of the item's properties whose value another item of its category shares (so
              query 2 has hits), the one with the most distinct values: a brand rather than a
              season
    complete  the property with the most of both: items lacking it in categories where it
              applies (query 3's condition) and held-out test facts (to measure precision on)
    """
    import numpy as np

    from etl.catalog_build import TRIPLE_TEST, CatalogBuild

    catalog = CatalogBuild.open(build)
    items, properties = catalog.items, catalog.properties
    triples, split = np.asarray(catalog.triples), np.asarray(catalog.triple_split)
    facts = np.bincount(triples[:, 0], minlength=len(items))
    holders = [np.unique(triples[triples[:, 1] == p, 0]) for p in range(len(properties))]

    popular = items["category"].value_counts().index[:10]
    candidates = items[(items["split"] == "test") & items["category"].isin(popular) & (facts > 0)]
    for narrower in (candidates["has_image"], candidates["title"].notna()):
        if narrower.any():
            candidates = candidates[narrower]
    pool = candidates if len(candidates) else items[facts > 0] if (facts > 0).any() else items
    index = int(pool.index[np.argmax(facts[pool.index.to_numpy()])])
    row = items.iloc[index]
    category = row["category"] if isinstance(row["category"], str) else None

    distinct = [len(np.unique(triples[triples[:, 1] == p, 2])) for p in range(len(properties))]
    show = max(range(len(properties)), key=lambda p: (len(holders[p]), distinct[p]), default=None)
    show = properties[show] if show is not None else None
    same, best = show, (-1, -1)
    in_category = set(np.flatnonzero(items["category"].to_numpy() == category)) if category else set(range(len(items)))
    for _, p, v in triples[triples[:, 0] == index]:
        sharing = len(set(triples[(triples[:, 1] == p) & (triples[:, 2] == v), 0]) & in_category) - 1
        rank = (sharing > 0, distinct[p])  # shared with someone, then the most selective (a brand, not a season)
        if rank > best:
            same, best = properties[p], rank

    categories = items["category"].to_numpy()
    sizes = items["category"].value_counts()
    complete, most = show, 0
    for p, having in enumerate(holders):
        held_out = int(((triples[:, 1] == p) & (split == TRIPLE_TEST)).sum())
        if min(held_out, len(items) - len(having)) <= most:
            continue
        share = items.iloc[having]["category"].value_counts() / sizes
        applies = set(share[share >= min_category_share].index)
        lacking = int((np.isin(categories, list(applies)) & ~np.isin(np.arange(len(items)), having)).sum())
        if min(held_out, lacking) > most:  # items to complete and facts to measure, both
            complete, most = properties[p], min(held_out, lacking)
    return {"item": {"item_id": str(row["item_id"]), "title": row["title"] if isinstance(row["title"], str) else None,
                     "category": category},
            "show": show, "same": same, "complete": complete}


def score_spread(build: Path, item_id: str, pairs: int = 5000, seed: int = 0) -> str:
    """The cosine of the example item to every other item, by rank, and the mean cosine of
    random pairs: a search score means something only when it spreads (a collapsed model puts
    every item near 1)."""
    import numpy as np

    from k3m.embedding.store import EmbeddingStore
    from k3m.query.vector_search import ExactIndex

    store = EmbeddingStore.open(build)  # newest model
    index = ExactIndex(store)  # the cosine `k3m query similar` ranks by
    unit = index.matrix * index.inv_norms[:, None]
    row = store.row_of[str(item_id)]
    scores = np.sort(np.delete(unit @ unit[row], row))[::-1]
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(unit), (2, pairs))
    keep = a != b
    random_pairs = float(np.mean(np.sum(unit[a[keep]] * unit[b[keep]], axis=1)))
    ranks = [r for r in (1, 10, 100, 1000) if r <= len(scores)]
    by_rank = ", ".join(f"#{r} {scores[r - 1]:.3f}" for r in ranks)
    return (f"to {item_id}: {by_rank}, median {float(np.median(scores)):.3f}, lowest {scores[-1]:.3f}; "
            f"mean over {int(keep.sum())} random item pairs {random_pairs:.3f}")


def _projection(build: Path, png: Path) -> None:
    from etl.catalog_build import CatalogBuild
    from k3m.embedding.store import EmbeddingStore
    from k3m.embedding.projection import embedding_projection

    catalog = CatalogBuild.open(build)
    store = EmbeddingStore.open(build)  # newest model
    with warnings.catch_warnings():
        # matplotlib's default font has no CJK glyphs: one warning per character of such category names
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        embedding_projection(store.matrix, catalog.items["category"].fillna("(none)").to_numpy(), png)


if __name__ == "__main__":
    sys.exit(main())
