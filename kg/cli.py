"""`k3m kg ...`: load the PKG into RDF and the graph database, serve, query, inspect, export.

    k3m kg load BUILD [--rdf] [--graph] [--database NAME]   (neither flag: both; an updated
                                               build's sync.json is applied where it fits)
    k3m kg serve [--port N] [--detach]         embedded ArcadeDB on 127.0.0.1
    k3m kg stop
    k3m kg sparql BUILD "QUERY" [--json]
    k3m kg cypher "QUERY" [--param k=v]... [--param-json k=JSON]... [--json] [--write]   (read-only without --write)
    k3m kg stats BUILD [--json]
    k3m kg export BUILD --format turtle|ntriples|dgl -o OUT
    k3m kg export BUILD --format neo4j-admin -o OUT_DIR   (CSVs for neo4j-admin database import)

Graph commands use Neo4j when NEO4J_URI (+ NEO4J_USER, NEO4J_PASSWORD) is set, otherwise
the embedded server: the one `k3m kg serve` keeps running, or one started for the command.
A build remembers the database it was loaded into (BUILD/graph.json): later commands on
that build use it unless --database says otherwise. Errors are raised and reported once by
k3m/cli.py (exit 2 for the user's to fix, 1 for runtime failures).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from kg.params import add_param_arguments
from kg.paths import DATA_DIR_ENV


def add_parser(subparsers) -> None:
    kg = subparsers.add_parser("kg", help="product knowledge graph: RDF store, graph database, stats, export")
    sub = kg.add_subparsers(dest="kg_command", metavar="KG_COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help=f"state directory (default ${DATA_DIR_ENV} or ./data)")

    p = sub.add_parser("load", parents=[common], help="load a catalog build into the RDF store and/or the graph database")
    p.add_argument("build", type=Path)
    p.add_argument("--rdf", action="store_true", help="write the Oxigraph RDF store")
    p.add_argument("--graph", action="store_true", help="write the graph database over Bolt")
    p.add_argument("--base-iri", default=None, help="RDF base IRI (default https://k3m.example/)")
    p.add_argument("--store", type=Path, help="RDF store directory (default under the data directory)")
    p.add_argument("--database", help="graph database name (embedded: created when missing; default: the one the "
                                      "build was loaded into before, else the server's default)")
    p.add_argument("--items-per-batch", type=int, default=None, help="items per graph transaction")
    p.set_defaults(func=_load)

    p = sub.add_parser("serve", parents=[common], help="run the embedded ArcadeDB server (Bolt on 127.0.0.1)")
    p.add_argument("--port", type=int, help="Bolt port (default: a free one)")
    p.add_argument("--database", default=None, help="default database (default k3m)")
    p.add_argument("--heap", default=None, help="JVM heap, e.g. 2g")
    p.add_argument("--detach", action="store_true", help="start it and return; `k3m kg stop` ends it")
    p.set_defaults(func=_serve)

    p = sub.add_parser("stop", parents=[common], help="stop the embedded server of the data directory")
    p.set_defaults(func=_stop)

    p = sub.add_parser("sparql", parents=[common], help="run a SPARQL query on a build's RDF store")
    p.add_argument("build", type=Path)
    p.add_argument("query")
    p.add_argument("--json", action="store_true", help="SPARQL 1.1 JSON results (N-Triples for CONSTRUCT)")
    p.add_argument("--store", type=Path)
    p.set_defaults(func=_sparql)

    p = sub.add_parser("cypher", parents=[common], help="run a parameterized Cypher query, print a table or JSON",
                       description="Run a Cypher query; values only as parameters (--param k=v strings, "
                                   "--param-json k=JSON typed). Read-only unless --write. Prints an aligned table "
                                   "with the row count and the time taken, or the rows as JSON.")
    p.add_argument("query", help="Cypher text; values as $parameters")
    add_param_arguments(p)
    p.add_argument("--database", help="graph database (default: the server's default)")
    p.add_argument("--json", action="store_true", help="rows as a JSON list")
    p.add_argument("--write", action="store_true",
                   help="allow the query to change the graph (refused otherwise: a later `k3m kg load` does not "
                        "undo what it creates)")
    p.set_defaults(func=_cypher)

    p = sub.add_parser("stats", parents=[common],
                       help="degree distributions, vocabulary statistics and label leakage of the PKG")
    p.add_argument("build", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)

    p = sub.add_parser("export", parents=[common],
                       help="export the PKG as Turtle, N-Triples, a DGL graph or neo4j-admin import CSVs")
    p.add_argument("build", type=Path)
    p.add_argument("--format", choices=["turtle", "ntriples", "dgl", "neo4j-admin"], required=True)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="the file to write (neo4j-admin: a new or empty directory)")
    p.add_argument("--store", type=Path)
    p.set_defaults(func=_export)


# -- commands ---------------------------------------------------------------------------

def _load(args) -> int:
    from etl.catalog_build import CatalogBuild
    from kg import loaded_into
    from kg.output import progress_printer

    _apply_data_dir(args)
    build = CatalogBuild.open(args.build)
    both = not (args.rdf or args.graph)
    reports = {}
    if args.rdf or both:
        from kg.rdf_iris import DEFAULT_BASE_IRI
        from kg.rdf_store import RdfSettings, load_rdf

        report = load_rdf(build, args.store, RdfSettings(base_iri=args.base_iri or DEFAULT_BASE_IRI),
                          progress=progress_printer("RDF items written"))
        reports["rdf"] = report.as_dict()
    if args.graph or both:
        from kg.graph_db import connect
        from kg.graph_load import GraphLoadSettings, load_graph

        settings = GraphLoadSettings(**({"items_per_batch": args.items_per_batch} if args.items_per_batch else {}))
        with connect(database=args.database or loaded_into.database_of(build.path)) as db:
            report = load_graph(build, db, settings, progress=progress_printer("graph items written"))
            reports["graph"] = {**report.as_dict(), "server": db.capabilities.agent, "database": db.database}
    print(json.dumps(reports, indent=1))
    return 0


def _serve(args) -> int:
    from kg import embedded_server
    from kg.embedded_server import ServerSettings

    _apply_data_dir(args)
    options = {k: v for k, v in (("bolt_port", args.port), ("database", args.database), ("heap", args.heap)) if v}
    server = embedded_server.start(settings=ServerSettings(**options, stop_with_caller=not args.detach))
    print(f"embedded graph server: {server.uri} pid={server.pid}", file=sys.stderr)
    print(f"  databases: {', '.join(server.list_databases())} (default: {server.database}; a build loaded with "
          f"--database NAME is queried there)", file=sys.stderr)
    print(f"  user root, password in {server.home / 'password'} (mode 0600)", file=sys.stderr)
    if args.detach:
        print("  stop it with `k3m kg stop`", file=sys.stderr)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("  Ctrl-C stops it", file=sys.stderr)
    stop.wait()
    server.stop()
    return 0


def _stop(args) -> int:
    from kg import embedded_server

    _apply_data_dir(args)
    stopped = embedded_server.stop()
    print("embedded graph server stopped" if stopped else "no embedded graph server running", file=sys.stderr)
    return 0


def _sparql(args) -> int:
    from etl.catalog_build import CatalogBuild
    from kg.rdf_store import open_rdf, sparql, store_dir

    _apply_data_dir(args)
    build = CatalogBuild.open(args.build)
    result = sparql(open_rdf(args.store or store_dir(build)), args.query)
    if result.type in ("SELECT", "ASK") and args.json:
        sys.stdout.write(result.serialize(format="json").decode() + "\n")
    elif result.type == "CONSTRUCT":
        sys.stdout.write(result.graph.serialize(format="nt" if args.json else "turtle"))
    elif result.type == "ASK":
        print("true" if result.askAnswer else "false")
    else:
        print("\t".join(str(v) for v in result.vars))
        for row in result:
            print("\t".join("" if v is None else str(v) for v in row))
    return 0


def _cypher(args) -> int:
    from kg.cypher import run_cypher
    from kg.graph_db import connect
    from kg.params import parse_params

    _apply_data_dir(args)
    params = parse_params(args.param, args.param_json)
    with connect(database=args.database, create=False) as db:
        result = run_cypher(db, args.query, params, write=args.write)
    if args.json:
        print(json.dumps(result.rows, ensure_ascii=False, indent=1))
    else:
        print(result.render())
    return 0


def _stats(args) -> int:
    from etl.catalog_build import CatalogBuild
    from etl.leakage import build_leakage
    from kg.nx_graph import pkg_multidigraph, pkg_stats

    build = CatalogBuild.open(args.build)
    stats = pkg_stats(pkg_multidigraph(build))
    stats["label_leakage"] = build_leakage(build)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=1))
        return 0
    print(f"items {stats['items']}  values {stats['values']}  properties {stats['properties']}  triples {stats['triples']}")
    print(f"items without triples {stats['items_without_triples']}  unused values {stats['values_unused']}  "
          f"weakly connected components {stats['weakly_connected_components']}")
    for name in ("triples_per_item", "properties_per_item", "items_per_value", "values_per_property"):
        d = stats[name]
        hist = "  ".join(f"{k}:{v}" for k, v in d["histogram"].items())
        print(f"{name:<20} min {d['min']}  median {d['median']}  mean {d['mean']}  max {d['max']}  | {hist}")
    print("top values: " + ", ".join(f"{v['text']} ({v['items']})" for v in stats["top_values"]))
    for line in _leakage_lines(stats["label_leakage"]):
        print(line)
    return 0


def _leakage_lines(leakage: dict) -> list[str]:
    if leakage.get("baseline") is None:
        return ["label leakage: not measured (needs categories on train and held-out items)"]
    lines = [f"label leakage: category from one property's value alone, {leakage['heldout_items']} held-out items; "
             f"always guessing {leakage['baseline_category']!r}: {100 * leakage['baseline']:.1f}%"]
    for p in leakage["properties"][:5] + [p for p in leakage["properties"][5:] if p["property"] in leakage["suspects"]]:
        flag = ("  <- SUSPECT: exclude it in the mapping if it restates the label" if p["property"] in leakage["suspects"]
                else "  (not_leakage in the mapping)" if p["property"] in leakage.get("not_leakage", []) else "")
        lines.append(f"  {p['property']:<24} {100 * p['accuracy']:5.1f}%  (+{100 * p['gain']:.1f} pp, on "
                     f"{100 * p['coverage']:.0f}% of items){flag}")
    return lines


def _export(args) -> int:
    from etl.catalog_build import CatalogBuild

    _apply_data_dir(args)
    build = CatalogBuild.open(args.build)
    if args.format == "neo4j-admin":
        from kg.neo4j_admin import export_neo4j_admin

        report = export_neo4j_admin(build, args.output)
        print(json.dumps(report.as_dict(), indent=1))
        return 0
    if args.output.is_dir():
        raise IsADirectoryError(f"{args.output}: is a directory; -o names the file to write")
    if args.format == "dgl":
        from kg.dgl_export import save_dgl

        save_dgl(build, args.output)
    else:
        from kg.rdf_store import export_rdf, store_dir

        export_rdf(args.store or store_dir(build), args.output, args.format)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


# -- helpers ----------------------------------------------------------------------------

def _apply_data_dir(args) -> None:
    if args.data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(args.data_dir.resolve())
