"""The demo on catalogs that are not fashion44k: what it shows comes from the catalog itself."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from k3m.demo import pick_examples

REPO = Path(__file__).resolve().parents[2]
COLUMNS = {"sku": "id", "label": "productDisplayName", "kind": "articleType", "colour": "baseColour",
           "for": "gender", "occasion": "usage", "season": "season"}


def _shop_catalog(fashion_dir: Path, folder: Path, rows: int) -> tuple[Path, Path]:
    """Real fashion44k rows as a user's CSV with their own column names: no brandName, no
    Fabric, no articleAttributes, no images."""
    import gzip
    import itertools

    with gzip.open(fashion_dir / "styles.jsonl.gz", "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in itertools.islice(f, rows)]
    source = folder / "my_catalog.csv"
    with source.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(list(COLUMNS))
        for r in records:
            writer.writerow([r["articleType"]["typeName"] if k == "articleType" else r[k] for k in COLUMNS.values()])
    mapping = folder / "my_mapping.yaml"
    mapping.write_text("id: sku\ntitle: label\ncategory: kind\nabsent: [NA, '']\n"
                       "properties: [colour, for, occasion, season]\n")
    return source, mapping


def test_picks_come_from_the_build(k3m_sample_build):
    build = CatalogBuild.open(k3m_sample_build)
    picks = pick_examples(k3m_sample_build)
    assert {picks["show"], picks["same"], picks["complete"]} <= set(build.properties)
    items = build.items
    row = items[items["item_id"] == picks["item"]["item_id"]].iloc[0]
    assert row["category"] == picks["item"]["category"]
    triples = np.asarray(build.triples)
    index = int(row.name)
    own = {build.properties[p] for _, p, _ in triples[triples[:, 0] == index]}
    assert picks["same"] in own  # constrained on a property the item has
    p = build.properties.index(picks["complete"])
    assert ((triples[:, 1] == p) & (np.asarray(build.triple_split) == 2)).any()  # held-out facts to measure


@pytest.mark.slow
def test_demo_runs_on_a_catalog_without_fashion_properties(fashion_dir, tmp_path):
    """README: `bash scripts/demo.sh --source my_catalog.csv --mapping my_mapping.yaml` (the
    script sources the environment and runs `python -m k3m.demo`)."""
    source, mapping = _shop_catalog(fashion_dir, tmp_path, 300)
    env = {**os.environ, "K3M_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "k3m.demo", "--source", str(source), "--mapping", str(mapping),
                           "--epochs", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for step in ("query 1: items similar to", "query 2: similar to", "query 3: attribute completion",
                 "Cypher over the suggestions just written", "2-D projection"):
        assert step in out, step
    assert "Fabric" not in out and "brandName" not in out
    picks = json.loads(out.split("== examples picked from this catalog: ", 1)[1].splitlines()[0])
    assert picks["complete"] in ("colour", "for", "occasion", "season")
    assert f"Completion of {picks['complete']!r}" in out or "Nothing to complete" in out
    assert "Held-out facts (" in out and (tmp_path / "data" / "demo" / "embeddings.png").is_file()
    assert "Traceback" not in done.stderr and "FutureWarning" not in done.stderr
