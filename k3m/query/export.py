"""`k3m query export`: the items a Cypher query matches, with their embeddings, to a file.

    k3m query export 'MATCH (i:Item)-[:IN_CATEGORY]->(:Category {name: $c}) RETURN i.id AS id, i.title AS title' \\
        --param c=Watches -o watches.parquet
    k3m query export 'MATCH (i:Item) WHERE i.has_image = false RETURN i.id AS id' -o no_image.npz

The query must return a column ``id`` (item ids); its other columns are kept. Values come
as parameters (``--param k=v`` strings, ``--param-json k=JSON`` typed), never spliced into
the text. Embeddings are the build's float32 rows (exact, no Bolt round trip).

Formats, by the output's suffix:

``.parquet``  one row per item: the query's columns, then ``embedding`` as
              fixed_size_list<float32>[H]; the model id and query are in the schema metadata
``.npz``      ``ids`` (str), ``embeddings`` (float32 [n, H]), each other column as an array
              (strings as str), loadable with ``np.load(path)`` (no pickles)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from etl.errors import InvalidValue
from k3m.embedding.store import EmbeddingStore

FORMATS = {".parquet": "parquet", ".npz": "npz"}
RESERVED = {"parquet": {"embedding"}, "npz": {"ids", "embeddings"}}


@dataclass
class ExportReport:
    path: str
    format: str
    items: int
    matched_rows: int
    missing_embedding: int  # matched ids without a row in the store (skipped)
    dim: int
    model_id: str

    def to_dict(self) -> dict:
        return asdict(self)


def export_items(db, store: EmbeddingStore, query: str, params: dict, out: str | Path) -> ExportReport:
    """Run ``query`` (returning ``id``), attach embeddings, write ``out`` (.parquet or .npz)."""
    from kg.cypher import run_cypher

    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a directory; -o names the file to write (.parquet or .npz)")
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InvalidValue(f"output must end in one of {sorted(FORMATS)}, got {out.name!r}")
    records = run_cypher(db, query, params).rows  # a query the server refuses is the user's error
    if records and "id" not in records[0]:
        raise InvalidValue(f"the query must return a column named id (it returned {sorted(records[0])})")
    columns = [c for c in (records[0] if records else {}) if c != "id"]
    clash = RESERVED[fmt] & set(columns)
    if clash:
        raise InvalidValue(f"column name(s) {sorted(clash)} are reserved in {fmt} output; rename them with AS")
    seen, kept = set(), []
    for r in records:  # first row of each id, in the query's order
        item_id = str(r["id"])
        if item_id in store.row_of and item_id not in seen:
            seen.add(item_id)
            kept.append(r)
    missing = len({str(r["id"]) for r in records} - seen)
    ids = [str(r["id"]) for r in kept]
    matrix = np.asarray(store.matrix[store.rows(ids)], dtype=np.float32).reshape(len(ids), store.matrix.shape[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    if fmt == "parquet":
        _parquet(tmp, ids, kept, columns, matrix, store.model_id, query)
    else:
        _npz(tmp, ids, kept, columns, matrix)
    tmp.replace(out)
    return ExportReport(str(out), fmt, len(ids), len(records), missing, int(matrix.shape[1]), store.model_id)


def _column_values(rows: list[dict], name: str) -> list:
    values = [r.get(name) for r in rows]
    if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
        return values
    return [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values]  # nested: JSON text


def _parquet(path: Path, ids, rows, columns, matrix, model_id: str, query: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = matrix.shape[1]
    data = {"id": pa.array(ids, pa.string())}
    for c in columns:
        data[c] = pa.array(_column_values(rows, c))
    data["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim)
    table = pa.table(data).replace_schema_metadata({"k3m.model_id": model_id, "k3m.query": query})
    pq.write_table(table, path)


def _npz(path: Path, ids, rows, columns, matrix) -> None:
    arrays = {"ids": np.array(ids, dtype=str), "embeddings": matrix}
    for c in columns:
        values = _column_values(rows, c)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
            arrays[c] = np.array(values)
        else:
            arrays[c] = np.array(["" if v is None else str(v) for v in values], dtype=str)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


# -- command line ----------------------------------------------------------------------
def add_parser(sub) -> None:
    from k3m.query.connection import add_graph_arguments, add_store_arguments
    from kg.params import add_param_arguments

    p = sub.add_parser("export", help="export the items a Cypher query matches, with embeddings (Parquet or NumPy)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("query", help="Cypher returning a column id (values as $parameters)")
    p.add_argument("-o", "--output", type=Path, required=True, help="out file: .parquet or .npz")
    add_param_arguments(p)
    add_store_arguments(p)
    add_graph_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from k3m.query.connection import apply_data_dir, locate_store, open_graph
    from kg.output import dumps
    from kg.params import parse_params

    apply_data_dir(args.data_dir)
    params = parse_params(args.param, args.param_json)
    with open_graph(args.database, args.build) as db:
        store = locate_store(db, args.build, args.model_id, required=True)
        report = export_items(db, store, args.query, params, args.output)
    if args.json:
        print(dumps(report.to_dict()))
    else:
        print(f"wrote {report.items} items x {report.dim} ({report.model_id}) to {report.path}"
              + (f"; {report.missing_embedding} matched ids had no embedding" if report.missing_embedding else ""))
    return 0
