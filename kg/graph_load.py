"""Load a catalog build into the graph database over Bolt (Neo4j or the embedded ArcadeDB).

Schema (labels, keys, relationships)::

    (:Item {id, title, category, group, split, has_image, load_hash})   id unique
    (:Value {text})        one node per distinct value string (shared across properties)
    (:Property {name})     the property vocabulary
    (:Category {name})     the category vocabulary
    (:Item)-[:HAS {property}]->(:Value)       one per triple <item, property, value>
    (:Item)-[:IN_CATEGORY]->(:Category)
    (:PKG {name: "k3m", build, manifest_sha256, items, triples, complete, loaded_at[, applying]})

All triples of the build are loaded (held-out link-prediction facts included: the graph is
the catalog; the split lives in the build), with the vocabulary they use: values and
properties of some triple, categories of some item (an updated build's vocabularies are
append-only and may hold names no item has any more). Missing titles/categories/groups are
absent properties, not empty strings.

Idempotence and speed: nodes that already exist are never re-sent. Each item carries
``load_hash``, a digest of everything the load writes for it (properties and pairs); the
loader reads the ids and hashes present, then

* creates new items together with their relationships in one transaction per batch
  (``UNWIND ... CREATE``: over 20x per-row ``MERGE``, see benchmarks/bench_kg_load.py),
* rewrites items whose hash changed (their HAS/IN_CATEGORY relationships are replaced,
  other properties such as embeddings are kept),
* leaves unchanged items alone, so a second load of the same build writes nothing.

An item and its relationships commit together, so no item is ever half-loaded; the PKG
node is marked incomplete before changes and complete only after the last batch. Loads into
one database are serialized (kg/load_lock.py), and the build remembers the database
(``BUILD/graph.json``, kg/loaded_into.py).

Sync: a build updated in place (`k3m import --update`) carries ``sync.json``, the diff from
the previous version. When the PKG node says the database holds another version of this
very build (its ``build`` is this path, its ``manifest_sha256`` not this one's) or that a
sync was cut short (``applying``), the load also

* marks the PKG node ``applying`` (and incomplete) with the items it has to invalidate
  (``pending``) first,
* deletes the items the build no longer has, with their relationships,
* drops what is derived from the old version of each changed item (graph content changed,
  or sync.json's ``changed``, which includes image-only changes, or still ``pending`` from
  a sync cut short): ``embedding``, ``embedding_model``, ``embedding_created`` and its
  ``SUGGESTED_VALUE`` relationships,
* writes items by hash as above, then deletes the vocabulary nodes left unused: values
  without an incoming HAS, categories without an IN_CATEGORY, properties the build no
  longer uses, and finally marks the PKG node complete without ``applying``/``pending``.

Each step is idempotent, and what is left to do is read from the graph and the marker, so a
load killed anywhere and run again, even after another update of the build, reaches the
same graph as a fresh load of the build. A database holding another build's items (another
path) gets the plain load: items not in this build stay.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from etl.errors import InvalidValue
from etl.sync import current_sync, manifest_sha256
from kg.graph_db import GraphDB

PKG_NAME = "k3m"

SCHEMA = (
    "CREATE CONSTRAINT k3m_item_id IF NOT EXISTS FOR (n:Item) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT k3m_value_text IF NOT EXISTS FOR (n:Value) REQUIRE n.text IS UNIQUE",
    "CREATE CONSTRAINT k3m_property_name IF NOT EXISTS FOR (n:Property) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT k3m_category_name IF NOT EXISTS FOR (n:Category) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT k3m_pkg_name IF NOT EXISTS FOR (n:PKG) REQUIRE n.name IS UNIQUE",
)

# Pairs travel as two parallel integer lists into per-batch vocabularies ($properties, and
# $values holding the value nodes' element ids): a third of the bytes and half the client
# encoding of one map per pair, and an element-id seek costs the server ~25% less than an
# index lookup by text (measured on ArcadeDB; Neo4j plans it as NodeByElementIdSeek).
_ITEM_PROPS = "title: r.title, category: r.category, group: r.group, split: r.split, has_image: r.has_image, load_hash: r.h"
_CREATE_PAIRS = """
WITH i, r
UNWIND range(0, size(r.v) - 1) AS k
MATCH (v:Value) WHERE elementId(v) = $values[r.v[k]]
CREATE (i)-[:HAS {property: $properties[r.p[k]]}]->(v)
"""
CREATE_ITEMS = f"""
UNWIND $rows AS r
CREATE (i:Item {{id: r.id, {_ITEM_PROPS}}})
{_CREATE_PAIRS}"""
UPDATE_ITEMS = f"""
UNWIND $rows AS r
MATCH (i:Item {{id: r.id}})
OPTIONAL MATCH (i)-[h:HAS|IN_CATEGORY]->()
DELETE h
WITH DISTINCT i, r
SET i.title = r.title, i.category = r.category, i.group = r.group, i.split = r.split,
    i.has_image = r.has_image, i.load_hash = r.h
{_CREATE_PAIRS}"""
LINK_CATEGORIES = """
UNWIND $rows AS r
MATCH (i:Item {id: r.id})
MATCH (c:Category {name: r.category})
CREATE (i)-[:IN_CATEGORY]->(c)
"""
MERGE_VOCAB = {
    "Value": "UNWIND $rows AS t MERGE (:Value {text: t})",
    "Property": "UNWIND $rows AS t MERGE (:Property {name: t})",
    "Category": "UNWIND $rows AS t MERGE (:Category {name: t})",
}
DELETE_ITEMS = """
UNWIND $rows AS id
MATCH (i:Item {id: id})
DETACH DELETE i
RETURN count(*) AS n
"""
# derived from an item's old version: `k3m embed` (k3m/embedding/writeback.py) and
# `k3m query complete` (k3m/query/complete.py) write these
INVALIDATE_ITEMS = """
UNWIND $rows AS id
MATCH (i:Item {id: id})
REMOVE i.embedding, i.embedding_model, i.embedding_created
WITH i
OPTIONAL MATCH (i)-[s:SUGGESTED_VALUE]->()
DELETE s
RETURN count(DISTINCT i) AS n
"""
# $rows: element ids of candidates (vocabulary nodes the build does not use); a value or a
# category is deleted only once nothing links to it (an item of an older load may)
_DELETE_UNLINKED = """
UNWIND $rows AS e
MATCH (n:{label}) WHERE elementId(n) = e
OPTIONAL MATCH (n)<-[r:{link}]-()
WITH n, count(r) AS links
WHERE links = 0
DETACH DELETE n
RETURN count(*) AS n
"""
DELETE_ORPHANS = {
    "Value": _DELETE_UNLINKED.format(label="Value", link="HAS"),
    "Category": _DELETE_UNLINKED.format(label="Category", link="IN_CATEGORY"),
    "Property": """
UNWIND $rows AS e
MATCH (n:Property) WHERE elementId(n) = e
DETACH DELETE n
RETURN count(*) AS n
""",
}
EXISTING_VOCAB = {
    "Value": "MATCH (n:Value) RETURN n.text AS key, elementId(n) AS eid",
    "Property": "MATCH (n:Property) RETURN n.name AS key, elementId(n) AS eid",
    "Category": "MATCH (n:Category) RETURN n.name AS key, elementId(n) AS eid",
}


class GraphLoadError(RuntimeError):
    """The database did not take a batch as written (its transaction was rolled back)."""


@dataclass(frozen=True)
class GraphLoadSettings:
    items_per_batch: int = 2000  # ~25k relationships per transaction on fashion44k
    vocab_batch: int = 5000

    def __post_init__(self):
        if self.items_per_batch < 1 or self.vocab_batch < 1:
            raise InvalidValue(f"items per batch must be positive, got {self.items_per_batch}")


@dataclass
class GraphLoadReport:
    items: int
    triples: int
    items_created: int
    items_updated: int
    items_unchanged: int
    nodes_created: int
    relationships_created: int
    relationships_deleted: int
    triples_created: int  # HAS relationships, the part of relationships_created that are triples
    seconds: float
    mode: str = "full"  # full: items compared by hash | sync: sync.json applied too | current: nothing to do
    items_removed: int = 0  # sync: items deleted (no longer in the build)
    items_invalidated: int = 0  # sync: changed items whose embedding and suggestions were dropped
    orphans_deleted: dict = field(default_factory=dict)  # sync: {"Value": n, "Category": n, "Property": n}

    @property
    def triples_per_s(self) -> float:
        return self.triples_created / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "triples_per_s": round(self.triples_per_s, 1)}


def ensure_schema(db: GraphDB) -> None:
    """Uniqueness constraints, each backed by an index (syntax both Neo4j 5 and ArcadeDB accept)."""
    for statement in SCHEMA:
        db.write(statement)


def load_graph(build, db: GraphDB, settings: GraphLoadSettings = GraphLoadSettings(),
               progress: Callable[[int, int], None] | None = None) -> GraphLoadReport:
    """Write ``build`` (a :class:`etl.catalog_build.CatalogBuild`) into ``db``; idempotent.

    Loads into one database run one at a time (:mod:`kg.load_lock`); a load that had to
    wait then finds the other's work done. The build records the database
    (:mod:`kg.loaded_into`)."""
    from kg import loaded_into
    from kg.load_lock import load_lock

    with load_lock(db):
        report = _load(build, db, settings, progress)
    try:
        loaded_into.record(build.path, db)
    except OSError as exc:  # a read-only build: the load itself is done
        warnings.warn(f"{build.path}: cannot record the database it was loaded into ({exc}); "
                      f"name it with --database in later commands", stacklevel=2)
    return report


def _load(build, db: GraphDB, settings: GraphLoadSettings, progress) -> GraphLoadReport:
    started = time.perf_counter()
    ensure_schema(db)
    totals: Counter = Counter()
    used = dict(zip(("Property", "Value", "Category"), build.used_vocabulary()))
    missing_vocab = {label: _missing(db, label, names) for label, names in used.items()}
    rows = item_rows(build)
    # one collected row: a record per item costs ~3x more over Bolt (1.3 s vs 0.45 s for 44k items)
    present = dict(db.run("MATCH (i:Item) RETURN collect([i.id, i.load_hash]) AS items")[0]["items"])
    new = [r for r in rows if r["id"] not in present]
    changed = [r for r in rows if r["id"] in present and present[r["id"]] != r["h"]]
    marker = _marker_props(build)
    found = db.run("MATCH (m:PKG {name: $name}) RETURN m {.*} AS m", name=PKG_NAME)
    current = found[0]["m"] if found else {}
    up_to_date = bool(found) and current.get("applying") is None and all(
        current.get(k) == v for k, v in marker.items() if k != "loaded_at")
    sync = _sync_plan(build, current, marker, present, changed)
    writes = bool(new or changed or any(missing_vocab.values()))
    removed = invalidated = 0
    orphans: dict = {}

    if sync or writes or not up_to_date:
        db.write("MERGE (m:PKG {name: $name}) SET m.complete = false", name=PKG_NAME)
        if sync:  # from here on, a rerun resumes this sync with what it still has to invalidate
            db.write("MATCH (m:PKG {name: $name}) SET m.applying = $sha, m.pending = $pending", name=PKG_NAME,
                     sha=marker["manifest_sha256"], pending=sync["invalidate"])
            removed = _write_counted(db, DELETE_ITEMS, sync["removed"], settings.items_per_batch)
            invalidated = _write_counted(db, INVALIDATE_ITEMS, sync["invalidate"], settings.items_per_batch)
        for label, names in missing_vocab.items():
            totals += db.write_batches(MERGE_VOCAB[label], names, settings.vocab_batch)
        value_ids = _element_ids(db, "Value")
        value_eids = [value_ids.get(text) for text in build.values]  # unused values have no node
        done, todo = 0, len(new) + len(changed)
        # One writer: two concurrent transactions conflict on the shared value nodes' edge
        # lists and the retries cost more than the second core gives (measured on ArcadeDB).
        for statement, group in ((UPDATE_ITEMS, changed), (CREATE_ITEMS, new)):
            for batch in _chunks(group, settings.items_per_batch):
                work = partial(_write_items, statement=statement, rows=batch, build=build, value_eids=value_eids)
                totals += db.write_transaction(work)
                done += len(batch)
                if progress:
                    progress(done, todo)
        if sync:
            for label, names in used.items():
                # every node of a used name has its links now: only the others can be orphans
                wanted = set(names)
                candidates = [eid for name, eid in _element_ids(db, label).items() if name not in wanted]
                orphans[label] = _write_counted(db, DELETE_ORPHANS[label], candidates, settings.vocab_batch)
        db.write("MERGE (m:PKG {name: $name}) SET m += $props REMOVE m.applying, m.pending", name=PKG_NAME, props=marker)

    return GraphLoadReport(
        items=len(rows),
        triples=int(len(build.triples)),
        items_created=len(new),
        items_updated=len(changed),
        items_unchanged=len(rows) - len(new) - len(changed),
        nodes_created=totals["nodes_created"],
        relationships_created=totals["relationships_created"],
        relationships_deleted=totals["relationships_deleted"],
        triples_created=totals["triples_created"],
        seconds=time.perf_counter() - started,
        mode="sync" if sync else "full" if writes or not up_to_date else "current",
        items_removed=removed,
        items_invalidated=invalidated,
        orphans_deleted=orphans,
    )


def _sync_plan(build, marker: dict, props: dict, present: dict, changed: list[dict]) -> dict | None:
    """What a sync deletes and invalidates, or None for a plain load.

    A sync applies when the database holds another version of this very build (the PKG node
    names its path) or a sync was cut short (``applying``). Whatever happened in between
    (loads skipped, an update run again after a crash), the graph then ends equal to a load
    of the build: ``removed`` = items of the graph the build no longer has; ``invalidate`` =
    items whose graph content changed, the build's sync.json ``changed`` (image-only changes
    included) and what a cut-short sync still had ``pending``."""
    if not marker or marker.get("build") != props["build"]:
        return None
    if marker.get("applying") is None and marker.get("manifest_sha256") == props["manifest_sha256"]:
        return None
    sync = current_sync(build) or {"changed": []}
    in_build = set(build.items["item_id"].tolist())
    invalidate = {row["id"] for row in changed} | set(sync["changed"]) | set(marker.get("pending") or ())
    return {"removed": sorted(i for i in present if i not in in_build),
            "invalidate": sorted(i for i in invalidate if i in in_build)}


def _write_counted(db: GraphDB, statement: str, rows: list, size: int) -> int:
    """``statement`` over ``rows`` in batches, one transaction each; the sum of its ``n``."""
    return sum(db.write_transaction(lambda tx, b=batch: tx.run(statement, rows=b).single()["n"])
               for batch in _chunks(rows, size))


def item_rows(build) -> list[dict]:
    """One row per item: its properties, pairs as global (property, value) ids ``p``/``v``,
    and ``h``, the digest of all of it (over strings, so it is comparable across builds)."""
    items = build.items
    triples = np.asarray(build.triples)
    offsets = build.item_triple_offsets.tolist()
    properties, values = build.properties, build.values
    prop_of = triples[:, 1].tolist()
    value_of = triples[:, 2].tolist()
    rows = []
    columns = zip(
        items["item_id"].tolist(), items["title"].tolist(), items["category"].tolist(),
        items["group"].tolist(), items["split"].tolist(), items["has_image"].tolist(),
    )
    for index, (item_id, title, category, group, split, has_image) in enumerate(columns):
        lo, hi = offsets[index], offsets[index + 1]
        row = {
            "id": item_id, "title": _text(title), "category": _text(category), "group": _text(group),
            "split": split, "has_image": bool(has_image), "p": prop_of[lo:hi], "v": value_of[lo:hi],
        }
        digest = hashlib.blake2b(digest_size=12)
        for key in ("id", "title", "category", "group", "split", "has_image"):
            digest.update(f"{key}\x1f{row[key]!r}\x1e".encode())
        for p, v in zip(row["p"], row["v"]):
            digest.update(f"{properties[p]}\x1f{values[v]}\x1e".encode())
        row["h"] = digest.hexdigest()
        rows.append(row)
    return rows


def _write_items(tx, *, statement: str, rows: list[dict], build, value_eids: list[str]) -> Counter:
    """Items of one batch with their HAS and IN_CATEGORY relationships, in one transaction."""
    used = sorted({v for row in rows for v in row["v"]})
    local = {v: k for k, v in enumerate(used)}
    batch = [{**row, "v": [local[v] for v in row["v"]]} for row in rows]
    summary = tx.run(statement, rows=batch, values=[value_eids[v] for v in used], properties=build.properties).consume()
    expected = sum(len(row["v"]) for row in rows)
    if summary.counters.relationships_created != expected:  # e.g. a value node deleted meanwhile
        raise GraphLoadError(f"batch wrote {summary.counters.relationships_created} of {expected} triples; rolled back")
    categories = [{"id": row["id"], "category": row["category"]} for row in rows if row["category"] is not None]
    linked = tx.run(LINK_CATEGORIES, rows=categories).consume()
    return Counter(
        nodes_created=summary.counters.nodes_created,
        relationships_created=summary.counters.relationships_created + linked.counters.relationships_created,
        relationships_deleted=summary.counters.relationships_deleted,
        triples_created=summary.counters.relationships_created,
    )


def _text(value) -> str | None:
    """pandas marks a missing string as NA/NaN; the graph stores no property instead."""
    return value if isinstance(value, str) else None


def _element_ids(db: GraphDB, label: str) -> dict[str, str]:
    return {r["key"]: r["eid"] for r in db.run(EXISTING_VOCAB[label])}


def _missing(db: GraphDB, label: str, names: list[str]) -> list[str]:
    present = _element_ids(db, label)
    return [n for n in dict.fromkeys(names) if n not in present]


def _marker_props(build) -> dict:
    return {
        "build": str(build.path.resolve()),
        "manifest_sha256": manifest_sha256(build.path),
        "items": int(build.num_items),
        "triples": int(len(build.triples)),
        "complete": True,
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _chunks(rows: list, size: int):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
