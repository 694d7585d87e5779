"""`k3m kg export BUILD --format neo4j-admin -o DIR`: the graph of a build as the node and
relationship CSV files of Neo4j's offline bulk importer, ``neo4j-admin database import full``.

The files hold exactly what `k3m kg load --graph` writes over Bolt (kg/graph_load.py): the
same labels, properties (with their types), relationship types and the same ``load_hash``
per item, and the PKG node marked complete, so a later `k3m kg load BUILD --graph` against
the imported database finds every item current, writes nothing and only adds the uniqueness
constraints (the importer creates none), and syncs after `k3m import --update` apply as usual.

    items.csv        id:ID(Item),:LABEL,title,category,group,split,has_image:boolean,load_hash
    values.csv       text:ID(Value),:LABEL
    properties.csv   name:ID(Property),:LABEL
    categories.csv   name:ID(Category),:LABEL
    pkg.csv          name:ID(PKG),:LABEL,build,manifest_sha256,items:long,triples:long,complete:boolean,loaded_at
    has.csv          :START_ID(Item),:END_ID(Value),:TYPE,property
    in_category.csv  :START_ID(Item),:END_ID(Category),:TYPE
    import.sh        the neo4j-admin command for these files (see docs/kg.md)

Header syntax (Neo4j Operations Manual, "Import: CSV header format"): each field is
``<name>:<field_type>``; the type of a property is one of int, long, float, double, boolean,
byte, short, char, string, point, date, localtime, time, localdatetime, datetime, duration
(string when omitted), ``[]`` appended for arrays, whose elements are separated by the
array delimiter (``;``, which also separates several ``:LABEL``\\ s); node files have one
``:ID`` (its name part keeps the id as a property; ``(Group)`` names an id space),
relationship files ``:START_ID(Group)``, ``:END_ID(Group)`` and ``:TYPE``.

Fields follow RFC 4180: every string (ids and labels too) in double quotes with quotes
doubled, so an empty string stays one; a missing property is an empty unquoted field, which
the importer skips (the property is absent, as `kg load` leaves it). Strings with line
breaks need ``--multiline-fields=true``, which import.sh passes when the export wrote one.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ARRAY_DELIMITER = ";"  # neo4j-admin's default; also between several :LABEL values
DELIMITER = ","

# (file, header) in the order neo4j-admin gets them
NODE_FILES = {
    "items.csv": ["id:ID(Item)", ":LABEL", "title", "category", "group", "split", "has_image:boolean", "load_hash"],
    "values.csv": ["text:ID(Value)", ":LABEL"],
    "properties.csv": ["name:ID(Property)", ":LABEL"],
    "categories.csv": ["name:ID(Category)", ":LABEL"],
    "pkg.csv": ["name:ID(PKG)", ":LABEL", "build", "manifest_sha256", "items:long", "triples:long",
                "complete:boolean", "loaded_at"],
}
RELATIONSHIP_FILES = {
    "has.csv": [":START_ID(Item)", ":END_ID(Value)", ":TYPE", "property"],
    "in_category.csv": [":START_ID(Item)", ":END_ID(Category)", ":TYPE"],
}


@dataclass
class Neo4jAdminExport:
    directory: str
    nodes: dict = field(default_factory=dict)  # file -> rows
    relationships: dict = field(default_factory=dict)  # file -> rows
    multiline_fields: bool = False
    seconds: float = 0.0
    command: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class _Table:
    """One CSV file: the header, then one line per row.

    String properties and ids are always quoted (RFC 4180: in double quotes, quotes inside
    doubled), so an empty string stays an empty string; None is an empty unquoted field (no
    property); booleans and numbers are bare. Python's csv module has this per-field rule
    only from 3.12 (QUOTE_STRINGS); the files are read back with it in the tests."""

    def __init__(self, path: Path, header: list[str]):
        self.handle = open(path, "w", encoding="utf-8", newline="")
        self.handle.write(DELIMITER.join(header) + "\n")  # plain names: nothing to quote
        self.rows = 0
        self.multiline = False

    def write(self, row: list) -> None:
        self.handle.write(DELIMITER.join(_field(value) for value in row) + "\n")
        self.multiline |= any(isinstance(v, str) and ("\n" in v or "\r" in v) for v in row)
        self.rows += 1

    def close(self) -> None:
        self.handle.close()


def _field(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return '"' + str(value).replace('"', '""') + '"'


def export_neo4j_admin(build, out_dir: str | Path, progress=None) -> Neo4jAdminExport:
    """Write the CSV files and import.sh for ``build`` into ``out_dir`` (created; must be empty)."""
    from kg.graph_load import PKG_NAME, _marker_props, item_rows

    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty directory; the export writes a fresh one")
    out.mkdir(parents=True, exist_ok=True)
    tables = {name: _Table(out / name, header) for name, header in {**NODE_FILES, **RELATIONSHIP_FILES}.items()}
    try:
        properties, values, categories = build.used_vocabulary()
        for name in values:
            tables["values.csv"].write([name, "Value"])
        for name in properties:
            tables["properties.csv"].write([name, "Property"])
        for name in categories:
            tables["categories.csv"].write([name, "Category"])
        marker = _marker_props(build)
        tables["pkg.csv"].write([PKG_NAME, "PKG", marker["build"], marker["manifest_sha256"], marker["items"],
                                 marker["triples"], marker["complete"], marker["loaded_at"]])
        all_properties, all_values = build.properties, build.values
        rows = item_rows(build)
        for n, r in enumerate(rows, 1):
            tables["items.csv"].write([r["id"], "Item", r["title"], r["category"], r["group"], r["split"],
                                       bool(r["has_image"]), r["h"]])
            for p, v in zip(r["p"], r["v"]):
                tables["has.csv"].write([r["id"], all_values[v], "HAS", all_properties[p]])
            if r["category"] is not None:
                tables["in_category.csv"].write([r["id"], r["category"], "IN_CATEGORY"])
            if progress and (n % 10000 == 0 or n == len(rows)):
                progress(n, len(rows))
    finally:
        for table in tables.values():
            table.close()
    multiline = any(t.multiline for t in tables.values())
    command = import_command(multiline)
    script = out / "import.sh"
    script.write_text("#!/bin/sh\n# Run from this directory on the Neo4j server, the database stopped or absent\n"
                      "# (docs/kg.md, 'Bulk load into Neo4j'); DATABASE defaults to neo4j.\n"
                      "set -e\ncd \"$(dirname \"$0\")\"\n" + command + "\n", encoding="utf-8")
    script.chmod(0o755)
    return Neo4jAdminExport(str(out), {n: tables[n].rows for n in NODE_FILES},
                            {n: tables[n].rows for n in RELATIONSHIP_FILES}, multiline,
                            round(time.perf_counter() - started, 3), command)


def import_command(multiline: bool, database: str = '"${DATABASE:-neo4j}"') -> str:
    """The ``neo4j-admin database import full`` line for the exported files."""
    parts = ["neo4j-admin database import full", f"--delimiter={shlex.quote(DELIMITER)}",
             f"--array-delimiter={shlex.quote(ARRAY_DELIMITER)}", "--id-type=string"]
    if multiline:
        parts.append("--multiline-fields=true")
    parts += [f"--nodes={name}" for name in NODE_FILES] + [f"--relationships={name}" for name in RELATIONSHIP_FILES]
    return " ".join(parts + ["--overwrite-destination=false", database])


