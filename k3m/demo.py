"""The whole story on the embedded defaults (README command 1: `bash scripts/demo.sh`).

catalog → `k3m import` → `k3m kg load` (RDF + embedded graph DB) → SPARQL and Cypher
answers → short `k3m pretrain` → `k3m embed` (build + Item.embedding) → three
`k3m query` scripts → a 2-D projection PNG of the embeddings coloured by category.

Every step is the real command-line tool, printed before it runs, so a reader can repeat
any step by hand. The embedded graph server is started once (`k3m kg serve --detach`) and
stopped at the end, whatever happens in between.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from kg.paths import data_dir, project_root


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
    parser.add_argument("--steps", type=int, default=150, help="pretraining steps of 32 items (default 150)")
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
    db = ["--database", "".join(c if c.isalnum() else "_" for c in name)]
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

    story.run("start the embedded graph database (ArcadeDB over Bolt, 127.0.0.1 only)", [*k3m, "kg", "serve", "--detach"])
    try:
        story.run("load the build into RDF (Oxigraph) and the graph database", [*k3m, "kg", "load", str(build), *db])
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
            "Cypher (parameterized): top brands",
            [*k3m, "kg", "cypher",
             "MATCH (i:Item)-[:HAS {property: $p}]->(b:Value) RETURN b.text AS brand, count(i) AS items "
             "ORDER BY items DESC LIMIT 5", "--param", "p=brandName", *db],
        )

        if args.fresh or not (run_dir / "checkpoints" / "latest").is_file():
            story.run(
                f"pretrain K3M (tiny preset, {args.steps} steps)",
                [*k3m, "pretrain", "--config", str(project_root() / "configs" / "tiny.yaml"),
                 "--set", f"build={build}", "--set", f"run_dir={run_dir}", "--set", f"max_steps={args.steps}",
                 "--set", "eval_every=0", "--set", f"checkpoint_every={args.steps}", "--set", "progress=false",
                 "--set", "log_every=25"],
            )
        else:
            print(f"\n== reusing the pretrained run {run_dir} (--fresh retrains)")
        story.run("embed every item (c*) into the build and onto Item nodes",
                  [*k3m, "embed", "--checkpoint", str(run_dir), str(build), *db])

        item = _example_item(build)
        story.run(f"query 1: items similar to {item['item_id']} ({item['title']!r})",
                  [*k3m, "query", "similar", item["item_id"], "--k", "5", "--show", "brandName", *db])
        story.run(f"query 2: similar to {item['item_id']}, same brand, same category",
                  [*k3m, "query", "similar", item["item_id"], "--k", "5", "--same-brand",
                   "--category", item["category"], "--show", "baseColour", *db])
        story.run("query 3: attribute completion for items lacking a Fabric (LPM), precision@1 on held-out facts",
                  [*k3m, "query", "complete", "--property", "Fabric", "--top-k", "3", "--limit", "200", *db])
        story.run("Cypher over the suggestions just written",
                  [*k3m, "query", "cypher",
                   "MATCH (i:Item)-[s:SUGGESTED_VALUE]->(v:Value) RETURN i.title AS item, s.property AS property, "
                   "v.text AS suggested, s.score AS score ORDER BY s.score LIMIT 5", *db])
        png = out / "embeddings.png"
        _projection(build, png)
        print(f"\n== 2-D projection of the item embeddings coloured by category: {png}")
    finally:
        subprocess.run([*k3m, "kg", "stop"], check=False)

    total = time.perf_counter() - story.started
    print("\n== timings (s)")
    for title, seconds in story.timings.items():
        print(f"{seconds:8.1f}  {title}")
    print(f"{total:8.1f}  total")
    return 0


def _example_item(build: Path) -> dict:
    """A test-split item with an image, a brand and a populous category: a readable example."""
    from etl.catalog_build import CatalogBuild

    catalog = CatalogBuild.open(build)
    items = catalog.items
    popular = items["category"].value_counts()
    candidates = items[(items["split"] == "test") & items["has_image"] & items["title"].notna()
                       & items["category"].isin(popular.index[:10])]
    row = (candidates if len(candidates) else items).iloc[0]
    return {"item_id": str(row["item_id"]), "title": row["title"], "category": str(row["category"])}


def _projection(build: Path, png: Path) -> None:
    from etl.catalog_build import CatalogBuild
    from k3m.embedding.store import EmbeddingStore
    from k3m.embedding.projection import embedding_projection

    catalog = CatalogBuild.open(build)
    store = EmbeddingStore.open(build)  # newest model
    embedding_projection(store.matrix, catalog.items["category"].fillna("(none)").to_numpy(), png)


if __name__ == "__main__":
    sys.exit(main())
