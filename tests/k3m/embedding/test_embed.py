"""`k3m embed`: c* of every item into the build and onto the graph, inductively, idempotently.

The checkpoint comes from a few real pretraining steps of a narrow tiny model on the
600-item fashion44k slice; the graph is the real embedded ArcadeDB server."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from k3m.embedding.embed import EmbedSettings, embed_build, model_id_for
from k3m.embedding.store import EmbeddingStore, EmbeddingStoreError
from k3m.embedding.writeback import WritebackSettings, write_back


@pytest.fixture(scope="module")
def checkpoint(micro_checkpoint) -> Path:
    return micro_checkpoint


@pytest.fixture(scope="module")
def build(slice_view) -> Path:
    return slice_view("embed-builds")


@pytest.fixture(scope="module")
def later_build(fashion_dir, tmp_path_factory) -> Path:
    """A later import: the same catalog's first 640 rows (40 items the model never saw)."""
    from etl.build import import_catalog

    out = tmp_path_factory.mktemp("embed-builds") / "fashion640"
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", out, limit=640)
    return out


@pytest.fixture(scope="module")
def store(checkpoint, build):
    return embed_build(checkpoint, build)[0]


_databases = itertools.count()


@pytest.fixture
def db(kg_server, kg_data_dir, build):
    """A fresh database with the 600-item build loaded (no embeddings yet)."""
    from kg.embedded_server import ServerSettings
    from kg.graph_db import connect
    from kg.graph_load import load_graph

    with connect(database=f"e{next(_databases)}", server_settings=ServerSettings(data_dir=kg_data_dir)) as db:
        load_graph(CatalogBuild.open(build), db)
        yield db


def test_store_layout_and_determinism(checkpoint, build, store):
    b = CatalogBuild.open(build)
    assert store.path == build / "embeddings" / model_id_for(checkpoint)
    assert store.matrix.shape == (600, 32) and store.matrix.dtype == np.float32
    assert store.ids.tolist() == b.items["item_id"].tolist()
    assert store.property_vectors.shape == (len(b.properties), 32) and store.value_vectors.shape == (len(b.values), 32)
    assert store.meta["facts"] == "train" and store.meta["checkpoint"].endswith("step_6")
    assert np.isfinite(store.matrix).all() and len(np.unique(np.round(store.matrix, 5), axis=0)) > 590
    # the id -> row map is written with the store and mapped back (a query command hashes no id)
    rows = EmbeddingStore(store.path).row_index
    assert isinstance(rows.hashes, np.memmap) and rows.find(store.ids[::-1]).tolist() == list(range(599, -1, -1))
    again, report = embed_build(checkpoint, build)
    assert report.reused and again.meta["created"] == store.meta["created"]
    fresh, report = embed_build(checkpoint, build, EmbedSettings(model_id="again", batch_size=7))
    assert not report.reused and np.allclose(fresh.matrix, store.matrix, atol=1e-5)  # batching changes nothing
    assert EmbeddingStore.available(build) == [store.model_id, "again"]
    assert EmbeddingStore.open(build).model_id == "again"  # newest by default


def test_float16_and_bad_names(checkpoint, build, store):
    half, _ = embed_build(checkpoint, build, EmbedSettings(dtype="float16", model_id="half"))
    assert half.matrix.dtype == np.float16 and np.allclose(half.matrix, store.matrix, rtol=1e-2, atol=1e-3)
    with pytest.raises(ValueError, match="model id"):
        embed_build(checkpoint, build, EmbedSettings(model_id="../escape"))
    with pytest.raises(EmbeddingStoreError, match="no embeddings of model"):
        EmbeddingStore.open(build, "missing")


def test_later_items_are_embedded_without_retraining(checkpoint, store, build, later_build):
    """The same checkpoint embeds a later, bigger import: the 40 new items get vectors of
    their own, and every known item keeps exactly its earlier vector: its pairs are read in
    the order the checkpoint trained with (property_order.json), not in the grown build's
    own property frequencies, which order most known items' pairs differently."""
    from k3m.data import CatalogIndex
    from k3m.model.checkpoint import load_property_order

    later, _ = embed_build(checkpoint, later_build)
    assert later.matrix.shape == (640, 32) and later.ids[:600].tolist() == store.ids.tolist()
    new = np.asarray(later.matrix[600:])
    assert np.isfinite(new).all() and len(np.unique(np.round(new, 5), axis=0)) == 40
    before = CatalogIndex.from_build(build)
    own_order = CatalogIndex.from_build(later_build)
    trained_order = CatalogIndex.from_build(later_build, property_order=load_property_order(checkpoint))
    reads = lambda index: [index.pair_strings(index.pairs(r)) for r in range(600)]
    assert reads(trained_order) == reads(before)
    assert sum(a != b for a, b in zip(reads(own_order), reads(before))) > 100  # what the saved order prevents
    np.testing.assert_allclose(later.matrix[:600], store.matrix, atol=1e-5)


def test_facts_all_reads_the_held_out_triples(checkpoint, build, store):
    """With --facts all the model reads the held-out triples too (train-only is the default,
    so completion's precision on them is honest)."""
    everything, _ = embed_build(checkpoint, build, EmbedSettings(facts="all", model_id="all-facts"))
    assert everything.meta["facts"] == "all" and store.meta["facts"] == "train"
    b = CatalogBuild.open(build)
    held_out = np.unique(np.asarray(b.triples)[np.asarray(b.triple_split) > 0, 0])
    assert len(held_out) > 50
    # an item whose held-out pairs fall past the pair and token caps (pairs in the
    # checkpoint's property order) reads the same knowledge either way; every other one moves
    from k3m.data import CatalogIndex
    from k3m.data.knowledge import backend, encode_knowledge
    from k3m.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    model, tokenizer, order = loaded.model, loaded.tokenizer, loaded.property_order
    text = model.config.text

    def read(facts):
        index = CatalogIndex.from_build(b, facts=facts, property_order=order)
        pairs = [index.pair_strings(index.pairs(r)[: text.max_pairs]) for r in held_out.tolist()]
        encoded = encode_knowledge(backend(tokenizer), pairs, text.max_knowledge_tokens)
        return [p[: e.num_pairs] for p, e in zip(pairs, encoded)]

    reads_more = np.array([a != b for a, b in zip(read("all"), read("train"))])
    assert reads_more.sum() > 50
    moved = ~np.isclose(everything.matrix[held_out], store.matrix[held_out], atol=1e-4).all(axis=1)
    assert moved[reads_more].all() and not moved[~reads_more].any()


def test_write_back_is_exact_and_idempotent(db, store):
    first = write_back(db, store, WritebackSettings(batch_size=64, workers=2))
    assert (first.written, first.skipped_current, first.missing_in_graph) == (600, 0, 0)
    rows = db.run("MATCH (i:Item) RETURN collect([i.id, i.embedding, i.embedding_model, i.embedding_created]) AS r")[0]["r"]
    assert len(rows) == 600
    for item_id, vec, model, created in rows:
        assert np.array_equal(np.asarray(vec, dtype=np.float32), store.matrix[store.row_of[item_id]])
        assert (model, created) == (store.model_id, store.meta["created"])
    second = write_back(db, store)
    assert (second.written, second.skipped_current) == (0, 600)
    forced = write_back(db, store, WritebackSettings(force=True))
    assert forced.written == 600
    assert db.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"] == 600  # never creates items


def test_write_back_of_other_embeddings_and_missing_items(db, checkpoint, store, later_build):
    write_back(db, store)
    later = EmbeddingStore.open(later_build)  # same model, another store: a new version for the graph
    report = write_back(db, later)
    assert (report.written, report.missing_in_graph, report.skipped_current) == (600, 40, 0)
    got = db.run("MATCH (i:Item {id: $id}) RETURN i.embedding_created AS c", id=store.ids[3])[0]["c"]
    assert got == later.meta["created"]


def test_cli_embeds_and_writes_back(db, kg_data_dir, checkpoint, build, capsys):
    args = ["embed", "--checkpoint", str(checkpoint), str(build), "--data-dir", str(kg_data_dir), "--database", db.database, "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["embed"]["reused"] and out["embed"]["items"] == 600  # the module's store is reused
    assert out["graph"]["written"] == 600 and out["graph"]["native_vector_index"] is False
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["graph"]["skipped_current"] == 600
    assert main(["embed", "--checkpoint", str(build), str(build), "--no-graph"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def _poisoned_run(checkpoint, tmp_path, token: str) -> tuple[Path, int]:
    """A copy of the run whose word embedding of ``token`` is NaN: every item whose title or
    knowledge text holds the token gets a NaN c*, the others are untouched."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from encoders.text import load_tokenizer
    from k3m.model.checkpoint import find_checkpoint

    run = tmp_path / "poisoned"
    shutil.copytree(checkpoint, run)
    ckpt = find_checkpoint(run)
    token_id = load_tokenizer(ckpt).convert_tokens_to_ids(token)
    weights = load_file(str(ckpt / "model.safetensors"))
    weights["stem.text_encoder.bert.embeddings.word_embeddings.weight"][token_id] = np.nan
    save_file(weights, str(ckpt / "model.safetensors"))
    return run, token_id


def test_no_nan_vector_reaches_the_store_or_the_graph(db, kg_data_dir, checkpoint, build, tmp_path, capsys):
    """A checkpoint holding NaN used to give NaN vectors, written to the store and the graph
    (and `k3m query similar` then showed score nan)."""
    from encoders.text import load_tokenizer
    from k3m.model.checkpoint import find_checkpoint

    run, token_id = _poisoned_run(checkpoint, tmp_path, "watch")
    tokenizer = load_tokenizer(find_checkpoint(run))
    titles = CatalogBuild.open(build).items.set_index("item_id")["title"]
    assert main(["embed", "--checkpoint", str(run), str(build), "--data-dir", str(kg_data_dir),
                 "--database", db.database]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress line
    assert err.startswith("k3m embed: error: ")
    assert "item vectors are not finite (NaN or inf): '" in err and "nothing was written" in err
    named = [name.strip(" '") for name in err.split("(NaN or inf): ")[1].split(";")[0].split(",") if "..." not in name]
    assert named and all(token_id in tokenizer(str(titles[i]))["input_ids"] for i in named)
    assert not any((Path(build) / "embeddings").glob(f"poisoned-*"))
    assert db.run("MATCH (i:Item) WHERE i.embedding IS NOT NULL RETURN count(i) AS n") == [{"n": 0}]


def test_a_stored_nan_vector_is_never_written_to_the_graph(db, checkpoint, build, tmp_path):
    """A store holding NaN rows (written before stores were checked, or damaged on disk): the
    write-back refuses it, naming the items, and writes nothing."""
    import shutil

    from k3m.embedding.store import NonFiniteVectors

    store = embed_build(checkpoint, build, EmbedSettings(model_id="nan-on-disk"))[0]
    copy = Path(build) / "embeddings" / "nan-on-disk"
    matrix = np.load(copy / "embeddings.npy")
    ids = store.ids
    matrix[[3, 17]] = np.nan
    np.save(copy / "embeddings.npy", matrix)
    try:
        with pytest.raises(NonFiniteVectors, match=rf"^2 of {len(ids)} item vectors are not finite \(NaN or inf\): "
                                                     rf"'{ids[3]}', '{ids[17]}'; nothing was written to the graph"):
            write_back(db, EmbeddingStore(copy))
        assert db.run("MATCH (i:Item) WHERE i.embedding IS NOT NULL RETURN count(i) AS n") == [{"n": 0}]
    finally:
        shutil.rmtree(copy)
