"""Attribute completion: suggestions for items lacking a property, never touching facts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from k3m.query import CompletionSettings, complete_attributes
from k3m.query.complete import WRITE, Completer, lacking_items

FACTS = "MATCH (i:Item)-[h:HAS]->(v:Value) RETURN collect([i.id, h.property, v.text]) AS facts"
SUGGESTIONS = ("MATCH (i:Item)-[s:SUGGESTED_VALUE]->(v:Value) "
               "RETURN collect([i.id, s.property, v.text, s.rank, s.score, s.model]) AS s")


def facts(db) -> list:
    return sorted(map(tuple, db.run(FACTS)[0]["facts"]))


def test_suggestions_never_touch_facts_and_rerun_is_idempotent(fresh_loaded_db, query_store, query_build):
    db, build = fresh_loaded_db, CatalogBuild.open(query_build)
    before = facts(db)
    report = complete_attributes(db, query_store, build, "Fabric", CompletionSettings(top_k=2))
    assert facts(db) == before  # observed facts unchanged, to the triple
    rows = db.run(SUGGESTIONS)[0]["s"]
    having = {i for i, p, _ in before if p == "Fabric"}
    suggested = {r[0] for r in rows}
    assert report.items_suggested == len(suggested) == report.items_lacking > 0
    assert report.suggestions_written == len(rows) == 2 * len(suggested)
    assert not suggested & having  # only items lacking the property
    assert {r[1] for r in rows} == {"Fabric"} and {r[5] for r in rows} == {query_store.model_id}
    fabrics = {v for _, p, v in before if p == "Fabric"}
    assert {r[2] for r in rows} <= fabrics
    by_item = {}
    for item, _, value, rank, score, _ in rows:
        by_item.setdefault(item, []).append((rank, score))
    assert all(sorted(v)[0][1] <= sorted(v)[1][1] for v in by_item.values())  # rank 1 = lowest distance
    # a second run replaces, never duplicates
    complete_attributes(db, query_store, build, "Fabric", CompletionSettings(top_k=2))
    again = db.run(SUGGESTIONS)[0]["s"]
    assert sorted(map(tuple, [r[:4] for r in again])) == sorted(map(tuple, [r[:4] for r in rows]))
    assert facts(db) == before


def test_write_rechecks_that_the_item_still_lacks_the_property(fresh_loaded_db, query_store):
    db = fresh_loaded_db
    item = db.run("MATCH (i:Item)-[:HAS {property: 'Fabric'}]->() RETURN i.id AS id LIMIT 1")[0]["id"]
    n = db.write_transaction(lambda tx: tx.run(
        WRITE, rows=[{"id": item, "s": [{"value": "Cotton", "score": 0.1, "rank": 1}]}],
        property="Fabric", model=query_store.model_id, created="t").single()["n"])
    assert n == 0 and db.run(SUGGESTIONS)[0]["s"] == []


def test_dry_run_writes_nothing_and_reports_precision(fresh_loaded_db, query_store, query_build):
    db, build = fresh_loaded_db, CatalogBuild.open(query_build)
    report = complete_attributes(db, query_store, build, "Pattern", CompletionSettings(write=False, heldout="all"))
    assert db.run(SUGGESTIONS)[0]["s"] == [] and report.suggestions_written == 0 and report.items_suggested > 0
    assert report.heldout_facts > 0 and 0.0 <= report.precision_at_1 <= report.hits_at_k <= 1.0
    assert report.majority_precision_at_1 is not None and not report.heldout_seen_by_model
    assert "precision@1" in report.render()


def test_heldout_precision_is_the_ranking_of_the_true_value(query_store, query_build):
    """precision@1 recomputed by hand from the model's LPM distances over all candidate values."""
    import torch

    build = CatalogBuild.open(query_build)
    completer = Completer(query_store, build, "Pattern")
    n, p1, _, _ = completer.heldout((1, 2), 3, 64)
    triples, split = np.asarray(build.triples), np.asarray(build.triple_split)
    p = build.properties.index("Pattern")
    held = triples[(split > 0) & (triples[:, 1] == p)]
    c = torch.tensor(np.asarray(query_store.matrix[held[:, 0]]))
    pv = torch.tensor(np.asarray(query_store.property_vectors[p]))
    vv = torch.tensor(np.asarray(query_store.value_vectors[completer.values]))
    d = torch.linalg.vector_norm(c[:, None] + pv - vv[None], dim=-1)
    best = completer.values[d.argmin(1).numpy()]
    assert n == len(held) and p1 == pytest.approx(float(np.mean(best == held[:, 2])))


def test_lacking_items_respect_category_applicability(fresh_loaded_db):
    lacking = lacking_items(fresh_loaded_db, "Sleeve Length", 0.5)
    categories = {c for _, c in lacking}
    assert lacking and categories <= {"Jackets", "Shirts", "Sweatshirts", "Tops", "Tshirts"}
    assert len(lacking_items(fresh_loaded_db, "Sleeve Length", 0.0001)) >= len(lacking)


def test_cli(kg_data_dir, fresh_loaded_db, query_build, capsys):
    args = ["query", "complete", "--property", "Fit", "--top-k", "1", "--limit", "5", "--build", str(query_build),
            "--data-dir", str(kg_data_dir), "--database", fresh_loaded_db.database]
    assert main(args + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["items_suggested"] == 5 and doc["suggestions_written"] == 5 and len(doc["examples"]) == 5
    assert main(args) == 0
    assert "Completion of 'Fit'" in capsys.readouterr().out
    assert main(args[:3] + ["Fitt"] + args[4:]) == 2
    assert capsys.readouterr().err.startswith("k3m query: error: property 'Fitt' is not in the build's vocabulary (")


def test_a_property_every_item_has_is_said_and_still_measured(fresh_loaded_db, query_store, query_build):
    report = complete_attributes(fresh_loaded_db, query_store, CatalogBuild.open(query_build), "gender",
                                 CompletionSettings(write=False))
    assert report.items_lacking == 0 and report.items_having == report.items_in_graph == 600
    assert report.heldout_facts > 0 and report.precision_at_1 is not None
    text = report.render()
    assert text.startswith("Nothing to complete: every item in the graph (600) has 'gender'.")
    assert "Held-out facts (" in text and "precision@1" in text
