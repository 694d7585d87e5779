"""`k3m query cypher "QUERY"`: free parameterized Cypher, printed as a table or JSON.

    k3m query cypher 'MATCH (:Item)-[:HAS {property: $p}]->(v:Value) RETURN v.text AS value, count(*) AS n ORDER BY n DESC LIMIT 5' --param p=baseColour
    k3m query cypher 'MATCH (i:Item {id: $id}) RETURN i.title AS title' --param id=15970 --json

Values go in as parameters: ``--param k=v`` (string), ``--param-json k=JSON`` (typed).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass


@dataclass
class CypherResult:
    columns: list[str]
    rows: list[dict]
    milliseconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        from k3m.query.output import table

        return f"{table(self.rows, self.columns)}\n({len(self.rows)} rows, {self.milliseconds:.0f} ms)"


def run_cypher(db, query: str, params: dict | None = None) -> CypherResult:
    from k3m.query.output import jsonable

    started = time.perf_counter()
    rows = [jsonable(r) for r in db.run(query, **(params or {}))]
    return CypherResult(list(rows[0]) if rows else [], rows, (time.perf_counter() - started) * 1000)


def add_parser(sub) -> None:
    from k3m.query.connection import add_graph_arguments
    from kg.params import add_param_arguments

    p = sub.add_parser("cypher", help="run a parameterized Cypher query, print a table or JSON",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("query", help="Cypher text; values as $parameters")
    add_param_arguments(p)
    add_graph_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from neo4j.exceptions import Neo4jError

    from k3m.query.connection import apply_data_dir, open_graph
    from k3m.query.output import dumps
    from kg.params import parse_params

    apply_data_dir(args.data_dir)
    try:
        params = parse_params(args.param, args.param_json)
        with open_graph(args.database) as db:
            result = run_cypher(db, args.query, params)
    except (ValueError, Neo4jError) as exc:
        print(f"k3m query cypher: error: {exc}", file=sys.stderr)
        return 2
    print(dumps(result.to_dict()) if args.json else result.render())
    return 0
