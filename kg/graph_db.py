"""A Bolt connection to the graph database: a real Neo4j when configured, else the embedded one.

Resolution order in :func:`connect`: explicit ``uri`` argument, then ``NEO4J_URI`` (with
``NEO4J_USER``, ``NEO4J_PASSWORD`` and optional ``NEO4J_DATABASE``), then the embedded
ArcadeDB server for the data directory, reused when running or started for the lifetime of
the connection. Queries only ever take values as parameters.

    with connect() as db:
        db.run("MATCH (i:Item {id: $id}) RETURN i.title AS title", id="15970")
        db.write_batches("UNWIND $rows AS r MERGE (:Value {text: r})", texts, batch_size=5000)
        if db.capabilities.native_vector_index: ...
"""
from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from etl.atomic import pid_alive
from etl.errors import InvalidValue, UserError
from kg import embedded_server
from kg.embedded_server import EmbeddedServer, ServerSettings

ENV_URI, ENV_USER, ENV_PASSWORD, ENV_DATABASE = "NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD", "NEO4J_DATABASE"

# The driver retries a failed transaction for up to 30 s (a remote server's blip). On the
# loopback embedded server a connection failure is a dead server: fail within seconds.
EMBEDDED_RETRY_S = 5.0

# Counter names of neo4j.SummaryCounters that report changes.
COUNTERS = (
    "nodes_created", "nodes_deleted", "relationships_created", "relationships_deleted",
    "properties_set", "labels_added", "labels_removed", "indexes_added", "constraints_added",
)


@dataclass(frozen=True)
class Capabilities:
    """What the connected server accepts, probed at connect time (never guessed from names).

    native_vector_index: Neo4j 5.11+ ``CREATE VECTOR INDEX`` and
        ``db.index.vector.queryNodes`` exist (ArcadeDB's Bolt refuses them).
    vector_similarity_function: ``vector.similarity.cosine(a, b)`` can be called (both).
    """

    agent: str
    native_vector_index: bool
    vector_similarity_function: bool


class GraphUnavailable(RuntimeError):
    """The graph server stopped answering, or died, in the middle of a command."""


class GraphDB:
    """A neo4j Driver bound to one database, with batched writes and capability flags."""

    def __init__(self, driver, database: str | None, server: EmbeddedServer | None = None, owns_server: bool = False,
                 uri: str | None = None):
        self.driver = driver
        self.database = database
        self.server = server  # the embedded server behind this connection, if any
        self.uri = uri or (server.uri if server is not None else None)
        self._owns_server = owns_server
        self.capabilities = self._probe()

    @property
    def is_embedded(self) -> bool:
        return self.server is not None

    def run(self, query: str, /, **params: Any) -> list[dict]:
        """Run one query in an auto-committed transaction; rows as plain dicts."""
        return self.run_with_keys(query, **params)[0]

    def run_with_keys(self, query: str, /, **params: Any) -> tuple[list[dict], list[str]]:
        """Like :meth:`run`, with the query's column names (known even without rows)."""
        with self.answering():
            records, _, keys = self.driver.execute_query(query, params, database_=self.database)
        return [record.data() for record in records], list(keys)

    @contextmanager
    def answering(self) -> Iterator[None]:
        """The driver's connection failures (several lines naming sockets, after its retries)
        as one :class:`GraphUnavailable` line saying what happened and what to do."""
        from neo4j.exceptions import ServiceUnavailable, SessionExpired

        try:
            yield
        except (ServiceUnavailable, SessionExpired) as exc:
            server = self.server
            if server is not None and not pid_alive(server.pid):
                message = (f"the embedded graph server (pid {server.pid}) died during the command; see "
                           f"{server.home / 'server.log'}; run the command again (a load resumes where it stopped)")
            else:
                message = f"the graph server at {self.uri} stopped answering: {' '.join(str(exc).split())}"
            raise GraphUnavailable(message) from None

    @property
    def where(self) -> str:
        """Which server and data directory, for messages and records."""
        if self.server is not None:
            return f"the embedded server of {self.server.home.parent}"
        return self.uri or "the graph server"

    def database_names(self) -> list[str]:
        """The server's databases (``system`` left out); [] when it does not say."""
        from neo4j.exceptions import Neo4jError

        try:
            records, _, _ = self.driver.execute_query("SHOW DATABASES YIELD name RETURN name", database_="system")
        except Neo4jError:
            return []
        return sorted({r["name"] for r in records} - {"system"})

    def write(self, query: str, /, **params: Any) -> Counter:
        """Run one write query in its own transaction (retried on transient errors); counters."""
        return self.write_transaction(lambda tx: _consume(tx.run(query, params)))

    def write_transaction(self, work: Callable[[Any], Counter]) -> Counter:
        """Run ``work(tx)`` as one managed write transaction: all of it commits or none."""
        with self.answering(), self.driver.session(database=self.database) as session:
            return session.execute_write(work)

    def write_batches(self, query: str, rows: Sequence | Iterable, batch_size: int, **params: Any) -> Counter:
        """``query`` once per batch with ``$rows`` bound to the batch, each its own transaction.

        Returns summed change counters (nodes_created, relationships_created, ...).
        """
        totals: Counter = Counter()
        for batch in _batches(rows, batch_size):
            totals += self.write(query, rows=batch, **params)
        return totals

    def close(self) -> None:
        self.driver.close()
        if self._owns_server and self.server is not None:
            self.server.stop()

    def __enter__(self) -> "GraphDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _probe(self) -> Capabilities:
        from neo4j.exceptions import Neo4jError

        agent = self.driver.get_server_info().agent
        try:
            self.run("RETURN vector.similarity.cosine([1.0, 0.0], [1.0, 0.0]) AS s")
            similarity = True
        except Neo4jError:
            similarity = False
        try:
            found = self.run(
                "SHOW PROCEDURES YIELD name WHERE name = $name RETURN count(*) AS n",
                name="db.index.vector.queryNodes",
            )
            vector_index = bool(found and found[0]["n"])
        except Neo4jError:
            vector_index = False
        return Capabilities(agent=agent, native_vector_index=vector_index, vector_similarity_function=similarity)


def connect(
    uri: str | None = None,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
    *,
    server_settings: ServerSettings | None = None,
    create: bool = True,
) -> GraphDB:
    """Open a :class:`GraphDB` (see the module docstring for how the server is chosen).

    With the embedded server, ``database`` other than the server's default is created on
    first use, unless ``create`` is False (readers: a misspelt name is then
    :class:`DatabaseNotFound`, not a new empty database); a server started by this call stops
    when the GraphDB is closed.
    """
    from neo4j import GraphDatabase

    uri = uri or os.environ.get(ENV_URI)
    if uri:
        auth = (user or os.environ.get(ENV_USER, "neo4j"), password or os.environ.get(ENV_PASSWORD, ""))
        driver = GraphDatabase.driver(uri, auth=auth)
        driver.verify_connectivity()
        return GraphDB(driver, database or os.environ.get(ENV_DATABASE) or None, uri=uri)

    if database is not None:
        embedded_server.check_database_name(database)
    server, started = embedded_server.ensure_running(server_settings or ServerSettings())
    try:
        database = database or server.database
        if database != server.database:
            if create:
                server.create_database(database)
            elif database not in server.list_databases():
                raise DatabaseNotFound(f"database {database!r} does not exist on the embedded server of "
                                       f"{server.home.parent} (databases: {', '.join(server.list_databases())})")
        driver = GraphDatabase.driver(server.uri, auth=server.auth, max_transaction_retry_time=EMBEDDED_RETRY_S)
        driver.verify_connectivity()
        return GraphDB(driver, database, server=server, owns_server=started)
    except BaseException:
        if started:
            server.stop()
        raise


class DatabaseNotFound(UserError, LookupError):
    """A database named for reading does not exist."""


def _consume(result) -> Counter:
    counters = result.consume().counters
    return Counter({name: getattr(counters, name) for name in COUNTERS if getattr(counters, name)})


def _batches(rows, size: int):
    if size < 1:
        raise InvalidValue(f"batch_size must be positive, got {size}")
    if isinstance(rows, Sequence):
        for start in range(0, len(rows), size):
            yield list(rows[start:start + size])
        return
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
