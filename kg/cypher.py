"""Free, parameterized Cypher (`k3m kg cypher`): rows with their columns and the time taken.

    k3m kg cypher 'MATCH (:Item)-[:HAS {property: $p}]->(v:Value) RETURN v.text AS value, count(*) AS n ORDER BY n DESC LIMIT 5' --param p=baseColour
    k3m kg cypher 'MATCH (i:Item {id: $id}) RETURN i.title AS title' --param id=15970 --json

Values go in as parameters only (``--param k=v`` strings, ``--param-json k=JSON`` typed; see
kg/params.py). A query the server refuses (syntax, a missing parameter, an unknown function)
is a :class:`CypherQueryError`: the user's to fix, reported in one message.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from etl.errors import UserError


class CypherQueryError(UserError, ValueError):
    """The server refused the query (a client error: syntax, parameters, semantics)."""


@dataclass
class CypherResult:
    columns: list[str]
    rows: list[dict]
    milliseconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        from kg.output import table

        count = f"{len(self.rows)} row{'' if len(self.rows) == 1 else 's'}"
        return f"{table(self.rows, self.columns)}\n({count}, {self.milliseconds:.0f} ms)"


def run_cypher(db, query: str, params: dict | None = None) -> CypherResult:
    """Run ``query`` with ``params`` on a :class:`kg.graph_db.GraphDB`; rows as JSON-ready dicts."""
    from neo4j.exceptions import ClientError

    from kg.output import jsonable

    started = time.perf_counter()
    try:
        records, keys = db.run_with_keys(query, **(params or {}))
    except ClientError as exc:
        raise CypherQueryError(f"the server refused the query: {exc.message or exc}") from None
    rows = [jsonable(r) for r in records]
    columns = list(keys) or (list(rows[0]) if rows else [])  # ArcadeDB sends no keys without rows
    return CypherResult(columns, rows, (time.perf_counter() - started) * 1000)
