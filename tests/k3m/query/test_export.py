"""`k3m query export`: items matched by Cypher, with their exact embeddings, as Parquet or NumPy."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from k3m.cli import main
from k3m.query import export_items

WATCHES = "MATCH (i:Item)-[:IN_CATEGORY]->(:Category {name: $c}) RETURN i.id AS id, i.title AS title, i.has_image AS img"


def test_parquet_round_trip(loaded_db, query_store, tmp_path):
    report = export_items(loaded_db, query_store, WATCHES, {"c": "Watches"}, tmp_path / "w.parquet")
    table = pq.read_table(tmp_path / "w.parquet")
    assert report.items == table.num_rows == 88 and report.missing_embedding == 0
    assert table.column_names == ["id", "title", "img", "embedding"]
    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    ids = table.column("id").to_pylist()
    assert np.array_equal(emb, np.asarray(query_store.matrix[query_store.rows(ids)]))
    assert table.schema.metadata[b"k3m.model_id"].decode() == query_store.model_id


def test_npz_round_trip_and_missing_ids(loaded_db, query_store, tmp_path):
    query = "UNWIND $ids AS x MATCH (i:Item {id: x}) RETURN i.id AS id, size(i.title) AS n UNION RETURN 'ghost' AS id, 0 AS n"
    report = export_items(loaded_db, query_store, query, {"ids": ["10017", "10000"]}, tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz") as data:  # no pickles needed
        assert data["ids"].tolist() == ["10017", "10000"]
        assert np.array_equal(data["embeddings"], np.asarray(query_store.matrix[[17, 0]]))
        assert data["n"].dtype.kind == "i"
    assert report.missing_embedding == 1 and report.matched_rows == 3


def test_bad_queries_are_refused(loaded_db, query_store, tmp_path):
    with pytest.raises(ValueError, match="column named id"):
        export_items(loaded_db, query_store, "MATCH (i:Item) RETURN i.title AS t LIMIT 1", {}, tmp_path / "a.npz")
    with pytest.raises(ValueError, match="reserved"):
        export_items(loaded_db, query_store, "MATCH (i:Item) RETURN i.id AS id, 1 AS embedding LIMIT 1", {}, tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="must end in"):
        export_items(loaded_db, query_store, WATCHES, {"c": "Watches"}, tmp_path / "a.csv")
    assert not list(tmp_path.iterdir())


def test_cli(kg_data_dir, loaded_db, tmp_path, capsys):
    out = tmp_path / "w.npz"
    assert main(["query", "export", WATCHES, "--param", "c=Watches", "-o", str(out), "--data-dir", str(kg_data_dir),
                 "--database", loaded_db.database]) == 0
    assert "wrote 88 items" in capsys.readouterr().out
    with np.load(out) as data:
        assert data["embeddings"].shape[0] == 88 and data["title"].dtype.kind == "U"


def test_cli_errors(kg_data_dir, loaded_db, tmp_path, capsys):
    base = ["--data-dir", str(kg_data_dir), "--database", loaded_db.database]
    assert main(["query", "export", WATCHES, "--param", "c=Watches", "-o", str(tmp_path), *base]) == 2
    assert capsys.readouterr().err == f"k3m query: error: {tmp_path}: is a directory; -o names the file to write (.parquet or .npz)\n"
    assert main(["query", "export", "MATCH (i:Item) RETRUN i.id AS id", "-o", str(tmp_path / "x.npz"), *base]) == 2
    assert capsys.readouterr().err.startswith("k3m query: error: the server refused the query: ")
    assert not list(tmp_path.iterdir())
