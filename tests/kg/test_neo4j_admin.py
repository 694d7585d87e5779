"""`k3m kg export --format neo4j-admin`: the CSV files parse with Python's csv module, every
header field follows the documented header syntax of `neo4j-admin database import` (Neo4j
Operations Manual, "Import: CSV header format"), every row fits its header, and the files
hold exactly the graph `k3m kg load --graph` writes (compared with the real embedded server).

Real data: the 600-item fashion44k slice, and 40 real rows edited to carry quotes,
backticks, braces and Cypher in ids, titles, properties and values."""
from __future__ import annotations

import csv
import json
import re
import shlex
from collections import Counter, defaultdict

import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from kg.graph_load import PKG_NAME, load_graph
from kg.neo4j_admin import ARRAY_DELIMITER, NODE_FILES, RELATIONSHIP_FILES, export_neo4j_admin

# the documented header syntax: <name>:<field_type>
TYPES = ("int", "long", "float", "double", "boolean", "byte", "short", "char", "string", "point", "date",
         "localtime", "time", "localdatetime", "datetime", "duration")
FIELD = re.compile(r"^(?P<name>[^:]*)(?::(?:(?P<id>ID|START_ID|END_ID)(?:\((?P<group>[^()]+)\))?"
                   r"|(?P<special>LABEL|TYPE|IGNORE)|(?P<type>" + "|".join(TYPES) + r")(?P<array>\[\])?))?$")
INTEGERS = ("int", "long", "byte", "short")
FLOATS = ("float", "double")


def parse_header(fields: list[str]) -> list[dict]:
    parsed = []
    for text in fields:
        match = FIELD.match(text)
        assert match, f"header field {text!r} is not <name>:<field_type>"
        field = {k: v for k, v in match.groupdict().items() if v is not None}
        if not any(k in field for k in ("id", "special")):
            assert field["name"], f"a property needs a name: {text!r}"
            field.setdefault("type", "string")
        parsed.append(field)
    return parsed


def value_of(field: dict, text: str):
    """A property's value as the importer reads it (None: an empty field, no property)."""
    if text == "":
        return None
    items = text.split(ARRAY_DELIMITER) if field.get("array") else [text]
    kind = field["type"]
    if kind == "boolean":
        assert all(t in ("true", "false") for t in items), text
        out = [t == "true" for t in items]
    elif kind in INTEGERS:
        out = [int(t) for t in items]
    elif kind in FLOATS:
        out = [float(t) for t in items]
    else:
        out = items
    return out if field.get("array") else out[0]


def read_export(directory) -> tuple[dict, dict]:
    """Parse and check every file: (nodes {label: {id: properties}}, relationships
    {type: Counter of (start, end, properties)})."""
    ids: dict[str, set] = defaultdict(set)
    nodes: dict[str, dict] = defaultdict(dict)
    pending = []
    for name in list(NODE_FILES) + list(RELATIONSHIP_FILES):
        with open(directory / name, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, strict=True))
        header = parse_header(rows[0])
        kinds = Counter(f.get("id") or f.get("special") or "property" for f in header)
        properties = [f["name"] for f in header if "type" in f]
        assert len(properties) == len(set(properties)), name
        is_node = name in NODE_FILES
        if is_node:
            assert kinds["ID"] == 1 and not kinds["START_ID"] and not kinds["END_ID"] and not kinds["TYPE"], name
        else:
            assert kinds["START_ID"] == kinds["END_ID"] == kinds["TYPE"] == 1 and not kinds["ID"] and not kinds["LABEL"]
        assert len(rows) > 1, f"{name} has no rows"
        for row in rows[1:]:
            assert len(row) == len(header), (name, row)
            props, labels, ends, kind = {}, [], {}, None
            for field, text in zip(header, row):
                if field.get("id") == "ID":
                    group = field.get("group", "")
                    assert text and text not in ids[group], f"{name}: id {text!r} empty or repeated in {group}"
                    ids[group].add(text)
                    node_id = text
                    if field["name"]:  # the id is kept as a property under that name
                        props[field["name"]] = text
                elif field.get("id") in ("START_ID", "END_ID"):
                    ends[field["id"]] = (field.get("group", ""), text)
                elif field.get("special") == "LABEL":
                    labels = text.split(ARRAY_DELIMITER)
                    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label) for label in labels), text
                elif field.get("special") == "TYPE":
                    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text), text
                    kind = text
                elif "type" in field:
                    value = value_of(field, text)
                    if value is not None:
                        props[field["name"]] = value
            if is_node:
                for label in labels:
                    nodes[label][node_id] = props
            else:
                pending.append((kind, ends, props))
    relationships: dict[str, Counter] = defaultdict(Counter)
    for kind, ends, props in pending:  # every end is a node of the id space it names
        for group, node_id in ends.values():
            assert node_id in ids[group], f"{kind}: no node {node_id!r} in id space {group}"
        relationships[kind][(ends["START_ID"][1], ends["END_ID"][1], tuple(sorted(props.items())))] += 1
    return nodes, relationships


def read_graph(db) -> tuple[dict, dict]:
    """The same two structures, read from a loaded database."""
    keys = {"Item": "id", "Value": "text", "Property": "name", "Category": "name", "PKG": "name"}
    nodes = {}
    for label, key in keys.items():
        rows = db.run(f"MATCH (n:{label}) RETURN n {{.*}} AS props")
        nodes[label] = {r["props"][key]: r["props"] for r in rows}
    relationships = {
        "HAS": Counter((r["s"], r["e"], (("property", r["p"]),)) for r in db.run(
            "MATCH (i:Item)-[h:HAS]->(v:Value) RETURN i.id AS s, v.text AS e, h.property AS p")),
        "IN_CATEGORY": Counter((r["s"], r["e"], ()) for r in db.run(
            "MATCH (i:Item)-[:IN_CATEGORY]->(c:Category) RETURN i.id AS s, c.name AS e")),
    }
    return nodes, relationships


@pytest.fixture(params=["slice", "hostile"])
def a_build(request, fashion_slice_build, hostile_build):
    return CatalogBuild.open(fashion_slice_build if request.param == "slice" else hostile_build)


def test_the_csv_files_hold_the_graph_kg_load_writes(a_build, graph_db, tmp_path):
    report = export_neo4j_admin(a_build, tmp_path / "out")
    nodes, relationships = read_export(tmp_path / "out")
    load_graph(a_build, graph_db)
    graph_nodes, graph_relationships = read_graph(graph_db)

    assert set(nodes) == set(graph_nodes) == {"Item", "Value", "Property", "Category", "PKG"}
    for label in ("Item", "Value", "Property", "Category"):
        assert nodes[label] == graph_nodes[label], label
    exported_pkg, loaded_pkg = nodes["PKG"][PKG_NAME], graph_nodes["PKG"][PKG_NAME]
    assert {k: v for k, v in exported_pkg.items() if k != "loaded_at"} == \
           {k: v for k, v in loaded_pkg.items() if k != "loaded_at"}
    assert dict(relationships) == graph_relationships
    assert len(nodes["Item"]) == a_build.num_items and sum(relationships["HAS"].values()) == len(a_build.triples)
    assert report.nodes["items.csv"] == a_build.num_items and report.relationships["has.csv"] == len(a_build.triples)


def test_hostile_strings_survive_the_csv(hostile_build, hostile, tmp_path):
    export_neo4j_admin(CatalogBuild.open(hostile_build), tmp_path / "out")
    nodes, relationships = read_export(tmp_path / "out")
    assert hostile.id in nodes["Item"] and hostile.value in nodes["Value"] and hostile.property in nodes["Property"]
    assert any('"' in (p.get("title") or "") for p in nodes["Item"].values())  # quotes doubled and read back
    assert any(props == (("property", hostile.property),) for _, _, props in relationships["HAS"])


def test_a_later_kg_load_finds_everything_current(fashion_slice_build, graph_db, tmp_path):
    """What the importer would write is what the loader compares with: after a load, the
    export's items carry the very load_hash the loader computes, so nothing is rewritten."""
    build = CatalogBuild.open(fashion_slice_build)
    export_neo4j_admin(build, tmp_path / "out")
    nodes, _ = read_export(tmp_path / "out")
    load_graph(build, graph_db)
    again = load_graph(build, graph_db)
    assert again.mode == "current" and again.items_unchanged == build.num_items
    hashes = {r["id"]: r["h"] for r in graph_db.run("MATCH (i:Item) RETURN i.id AS id, i.load_hash AS h")}
    assert hashes == {item_id: props["load_hash"] for item_id, props in nodes["Item"].items()}


def test_the_command_line_and_import_script(fashion_slice_build, tmp_path, capsys):
    out = tmp_path / "csv"
    assert main(["kg", "export", str(fashion_slice_build), "--format", "neo4j-admin", "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"]["items.csv"] == 600 and not report["multiline_fields"]
    script = (out / "import.sh").read_text()
    command = shlex.split(script.strip().splitlines()[-1])
    assert command[:4] == ["neo4j-admin", "database", "import", "full"] and command[-1] == "${DATABASE:-neo4j}"
    given = {arg.split("=", 1)[1] for arg in command if arg.startswith(("--nodes=", "--relationships="))}
    assert given == {p.name for p in out.glob("*.csv")} and "--array-delimiter=;" in command
    assert main(["kg", "export", str(fashion_slice_build), "--format", "neo4j-admin", "-o", str(out)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err


def test_the_header_check_can_fail():
    for bad in (["id:ID(Item", "x"], ["name:strin"], [":START_ID(Item)x"], [":long"]):
        with pytest.raises(AssertionError):
            parse_header(bad)
    assert parse_header(["a:int[]", "b", ":IGNORE", "id:ID(Item)"])[0] == {"name": "a", "type": "int", "array": "[]"}
