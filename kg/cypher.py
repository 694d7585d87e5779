"""Free, parameterized Cypher (`k3m kg cypher`): rows with their columns and the time taken.

    k3m kg cypher 'MATCH (:Item)-[:HAS {property: $p}]->(v:Value) RETURN v.text AS value, count(*) AS n ORDER BY n DESC LIMIT 5' --param p=baseColour
    k3m kg cypher 'MATCH (i:Item {id: $id}) RETURN i.title AS title' --param id=15970 --json

Values go in as parameters only (``--param k=v`` strings, ``--param-json k=JSON`` typed; see
kg/params.py). A query the server refuses (syntax, a missing parameter, an unknown function)
is a :class:`CypherQueryError`: the user's to fix, reported in one message.

Read-only unless ``write=True`` (`k3m kg cypher --write`): the graph is the build's, and a
later `k3m kg load` restores deleted items but keeps created ones, so a stray write would
leave a graph that is no longer the build. A query is run in a read transaction (READ access
mode, which Neo4j enforces itself). The embedded ArcadeDB does not enforce that mode, so its
own parser is asked first (:meth:`kg.embedded_server.EmbeddedServer.writes`), and a read
transaction whose summary still reports a change is rolled back. A write is
:class:`CypherWriteRefused`, exit 2.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from etl.errors import UserError


class CypherQueryError(UserError, ValueError):
    """The server refused the query (a client error: syntax, parameters, semantics)."""


class CypherWriteRefused(CypherQueryError):
    """A write where only reads are allowed."""


WRITE_REFUSED = ("the query writes to the graph (creates, merges, sets, removes or deletes something, or changes "
                 "the schema); this command only reads: pass --write to change the graph")


class _Wrote(Exception):
    """A read transaction that changed something: raised inside it, so it rolls back."""


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


def run_cypher(db, query: str, params: dict | None = None, write: bool = False) -> CypherResult:
    """Run ``query`` with ``params`` on a :class:`kg.graph_db.GraphDB`; rows as JSON-ready
    dicts. Only reads unless ``write`` (see the module docstring)."""
    from neo4j.exceptions import ClientError

    from kg.output import jsonable

    started = time.perf_counter()
    params = params or {}
    try:
        if write:
            records, keys = db.run_with_keys(query, **params)
        else:
            records, keys = _read(db, query, params)
    except ClientError as exc:
        if "AccessMode" in (exc.code or ""):  # Neo4j: a write in a read transaction
            raise CypherWriteRefused(WRITE_REFUSED) from None
        raise CypherQueryError(f"the server refused the query: {exc.message or exc}") from None
    rows = [jsonable(r) for r in records]
    columns = list(keys) or (list(rows[0]) if rows else [])  # ArcadeDB sends no keys without rows
    return CypherResult(columns, rows, (time.perf_counter() - started) * 1000)


def _read(db, query: str, params: dict) -> tuple[list[dict], list[str]]:
    """``query`` in a read transaction; a write is refused before it runs where the server
    can tell (embedded) and rolled back where it can only be seen after."""
    import neo4j

    if db.server is not None and db.server.writes(db.database, query, params):
        raise CypherWriteRefused(WRITE_REFUSED)

    def work(tx):
        result = tx.run(query, params)
        records, keys = [record.data() for record in result], list(result.keys())
        counters = result.consume().counters
        if counters.contains_updates or counters.contains_system_updates:
            raise _Wrote()
        return records, keys

    with db.answering(), db.driver.session(database=db.database, default_access_mode=neo4j.READ_ACCESS) as session:
        try:
            return session.execute_read(work)
        except _Wrote:
            raise CypherWriteRefused(WRITE_REFUSED) from None
