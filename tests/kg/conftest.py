"""KG fixtures (the session server and graph_db are in tests/conftest.py): builds imported by the real ETL from real fashion44k rows edited to carry hostile text."""
from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest


# Strings that would change a query if they were ever spliced into Cypher or SPARQL text.
HOSTILE_TITLE = 'x"}) MATCH (n) DETACH DELETE n //\nCREATE (:Pwned {`a`: 1}) RETURN $id'
HOSTILE_TITLE_2 = "Robert'); CALL db.labels() YIELD label RETURN label /* \\ \r\n */ } UNION MATCH (m) SET m.x = 1"
HOSTILE_VALUE = "Nike`]->(v) DELETE v WITH 1 AS x MERGE (:Pwned {k: '{x}'}) //"
HOSTILE_PROPERTY = "Fit} RETURN 1 //`"
HOSTILE_PROPERTY_VALUE = "Slim`\n} DETACH DELETE n ; DROP CONSTRAINT k3m_item_id"
HOSTILE_ID = "10000' OR 1=1 //"
RDF_HOSTILE_VALUE = 'Blue <b> "quoted" #frag %20 > ?q=1&x\\y'
HOSTILE_ROWS = 40  # real rows taken from the head of styles.jsonl.gz


def _real_rows(fashion_dir: Path, n: int) -> list[dict]:
    with gzip.open(fashion_dir / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in itertools.islice(stream, n)]


def _hostile_rows(rows: list[dict]) -> list[dict]:
    rows = [json.loads(json.dumps(r)) for r in rows]
    rows[0]["id"] = HOSTILE_ID  # no image under this id: also an image-missing item
    rows[1]["productDisplayName"] = HOSTILE_TITLE
    for key in ("brandName", "gender", "ageGroup", "baseColour", "colour1", "colour2",
                "fashionType", "season", "year", "usage"):
        rows[2][key] = "NA"  # the ETL drops "NA": this item has no triples at all
    rows[2]["articleAttributes"] = {}
    rows[3]["productDisplayName"] = HOSTILE_TITLE_2
    rows[4]["brandName"] = HOSTILE_VALUE
    rows[4]["articleAttributes"] = {**rows[4].get("articleAttributes", {}), HOSTILE_PROPERTY: HOSTILE_PROPERTY_VALUE}
    rows[5]["baseColour"] = RDF_HOSTILE_VALUE
    return rows


def _import(rows: list[dict], fashion_dir: Path, out: Path) -> Path:
    from etl.build import import_catalog

    source = out.parent / f"{out.name}.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    import_catalog([source], "fashion44k", out, images=str(fashion_dir / "images.zip"), workers=0)
    return out


@pytest.fixture(scope="session")
def hostile() -> SimpleNamespace:
    """The hostile strings planted in :func:`hostile_build` (tests import no conftest)."""
    return SimpleNamespace(
        id=HOSTILE_ID, title=HOSTILE_TITLE, title_2=HOSTILE_TITLE_2, value=HOSTILE_VALUE,
        property=HOSTILE_PROPERTY, property_value=HOSTILE_PROPERTY_VALUE, rdf_value=RDF_HOSTILE_VALUE,
    )


@pytest.fixture(scope="session")
def hostile_build(fashion_dir, tmp_path_factory) -> Path:
    """40 real rows with injection-hostile ids/titles/properties/values and one item without triples."""
    rows = _hostile_rows(_real_rows(fashion_dir, HOSTILE_ROWS))
    return _import(rows, fashion_dir, tmp_path_factory.mktemp("kg-builds") / "hostile")


@pytest.fixture(scope="session")
def hostile_build_edited(fashion_dir, tmp_path_factory) -> Path:
    """The same rows with one title and one attribute value changed (an updated catalog)."""
    rows = _hostile_rows(_real_rows(fashion_dir, HOSTILE_ROWS))
    rows[6]["productDisplayName"] = rows[6]["productDisplayName"] + " (2nd edition)"
    rows[7]["baseColour"] = "Teal" if rows[7].get("baseColour") != "Teal" else "Olive"
    return _import(rows, fashion_dir, tmp_path_factory.mktemp("kg-builds") / "hostile-edited")


# -- an updated catalog (k3m import --update), for the sync tests -----------------------------
LEGACY_PROPERTY, LEGACY_VALUE = "Legacy Fit", "Legacy Loose Sync"  # only on a removed item
NEW_COLOUR = "Aubergine Sync"  # a value only the new catalog has


@pytest.fixture(scope="session")
def sync_catalogs(fashion_dir, tmp_path_factory) -> SimpleNamespace:
    """The old catalog is rows 0..399 (one removed row carries an attribute no other item has),
    the new one rows 40..439 with 15 titles and 15 colours changed (3 to a value only it has)
    and one item's image file replaced by another picture (an image-only change)."""
    import zipfile

    work = tmp_path_factory.mktemp("sync-catalogs")
    with gzip.open(fashion_dir / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        rows = [json.loads(line) for line in itertools.islice(stream, 440)]
    old = json.loads(json.dumps(rows[:400]))
    old[5]["articleAttributes"] = {**old[5].get("articleAttributes", {}), LEGACY_PROPERTY: LEGACY_VALUE}
    new = json.loads(json.dumps(rows[40:440]))
    for row in new[10:25]:
        row["productDisplayName"] += " (2024 edition)"
    for k, row in enumerate(new[100:115]):
        row["baseColour"] = NEW_COLOUR if k < 3 else ("Teal" if row.get("baseColour") != "Teal" else "Olive")
    # the new catalog's images: a directory of the same files, one replaced by another's picture
    images = work / "images-new"
    (images / "images").mkdir(parents=True)
    with zipfile.ZipFile(fashion_dir / "images.zip") as archive:
        names = set(archive.namelist())
        for row in new:
            if f"images/{row['id']}.jpg" in names:
                (images / "images" / f"{row['id']}.jpg").write_bytes(archive.read(f"images/{row['id']}.jpg"))
    with_image = [str(r["id"]) for r in new[200:] if (images / "images" / f"{r['id']}.jpg").is_file()]
    image_only, donor = with_image[0], with_image[1]
    (images / "images" / f"{image_only}.jpg").write_bytes((images / "images" / f"{donor}.jpg").read_bytes())
    for name, catalog in (("old", old), ("new", new)):
        (work / f"{name}.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in catalog) + "\n",
                                            encoding="utf-8")
    return SimpleNamespace(old=work / "old.jsonl", new=work / "new.jsonl", old_images=fashion_dir / "images.zip",
                           new_images=images, image_only=image_only, legacy_property=LEGACY_PROPERTY,
                           legacy_value=LEGACY_VALUE, new_colour=NEW_COLOUR)
