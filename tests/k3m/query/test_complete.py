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
    completer = Completer(query_store, build, "Pattern", prior=False)
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


def hand_precision(store, build, completer, split: int, weight: float) -> float:
    """precision@1 on ``split``'s facts of the completer's property, ranking by the LPM
    distance less ``weight`` · log P(value), computed here with torch."""
    import torch

    triples, splits = np.asarray(build.triples), np.asarray(build.triple_split)
    held = triples[(splits == split) & (triples[:, 1] == completer.property)]
    held = held[np.isin(held[:, 2], completer.values)]
    items = np.unique(held[:, 0])
    c = torch.tensor(np.asarray(store.item_repr[items]))
    pv = torch.tensor(np.asarray(store.property_vectors[completer.property]))
    vv = torch.tensor(np.asarray(store.value_vectors[completer.values]))
    counts = torch.tensor(completer.counts, dtype=torch.float64)
    score = torch.linalg.vector_norm(c[:, None] + pv - vv[None], dim=-1).double() - weight * torch.log(counts / counts.sum())
    first = completer.values[score.argmin(1).numpy()]
    return float(np.mean([first[k] in held[held[:, 0] == item, 2] for k, item in enumerate(items)]))


def test_the_prior_weight_is_the_grid_best_on_valid_facts(query_store, query_build):
    """The weight chosen is the smallest of the grid with the best valid precision@1 (so never
    below the LPM alone nor the most-frequent guess there); the test ranking uses it."""
    build = CatalogBuild.open(query_build)
    completer = Completer(query_store, build, "baseColour")
    assert completer.calibration_facts >= Completer.MIN_CALIBRATION_FACTS
    by_weight = [hand_precision(query_store, build, completer, 1, w) for w in Completer.PRIOR_WEIGHTS]
    best = max(by_weight)
    assert completer.prior_weight == Completer.PRIOR_WEIGHTS[by_weight.index(best)]
    assert best >= by_weight[0] and best >= by_weight[-1]  # the LPM alone; the most frequent value always
    _, p1, _, majority = completer.heldout((2,), 3, 64)
    assert p1 == pytest.approx(hand_precision(query_store, build, completer, 2, completer.prior_weight))
    # scores rank, and distances() gives back the LPM distance of what was ranked
    rows = np.arange(8)
    ids, scores = completer.rank(rows, 3)
    assert (np.diff(scores, axis=1) >= 0).all()
    alone = Completer(query_store, build, "baseColour", prior=False)
    full_ids, full_d = alone.rank(rows, len(alone.values))  # every value's distance, per row
    lookup = {(int(r), int(v)): float(x) for r, vs, xs in zip(rows, full_ids, full_d) for v, x in zip(vs, xs)}
    recovered = completer.distances(ids, scores)
    assert recovered == pytest.approx(np.array([[lookup[(int(r), int(v))] for v in vs] for r, vs in zip(rows, ids)]), rel=1e-5)


def test_too_few_valid_facts_leave_the_lpm_alone(query_store, query_build, monkeypatch):
    build = CatalogBuild.open(query_build)
    monkeypatch.setattr(Completer, "MIN_CALIBRATION_FACTS", 10 ** 9)
    completer = Completer(query_store, build, "baseColour")
    assert completer.prior_weight == 0.0 and completer.calibration_facts == 0
    ids, scores = completer.rank(np.arange(4), 2)
    assert completer.distances(ids, scores) is scores


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
