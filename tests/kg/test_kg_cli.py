"""`k3m kg ...` end to end against the session's embedded server and real builds."""
from __future__ import annotations

import itertools
import json

import pytest

from etl.catalog_build import CatalogBuild
from k3m.cli import main
from kg import embedded_server
from kg.paths import DATA_DIR_ENV

_names = itertools.count()


def _k3m(capsys, *argv) -> tuple[int, str, str]:
    """Run the real `k3m` entry point in-process; (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data_dir(kg_server, kg_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(kg_data_dir))  # restored after the test, whatever the CLI sets
    return kg_data_dir


def test_load_then_query_both_stores_agree_with_the_build(capsys, data_dir, hostile_build, hostile):
    build = CatalogBuild.open(hostile_build)
    database = f"cli{next(_names)}"
    code, out, _ = _k3m(capsys, "kg", "load", hostile_build, "--data-dir", data_dir, "--database", database)
    report = json.loads(out)
    assert code == 0 and report["graph"]["triples_created"] == len(build.triples)
    assert report["rdf"]["pkg_triples"] == len(build.triples)

    code, out, _ = _k3m(capsys, "kg", "cypher", "MATCH (:Item)-[h:HAS]->(:Value) RETURN count(h) AS n",
                        "--database", database, "--json")
    assert code == 0 and json.loads(out) == [{"n": len(build.triples)}]
    code, out, _ = _k3m(capsys, "kg", "sparql", hostile_build, "--json",
                        "SELECT (COUNT(*) AS ?n) WHERE { ?p a rdf:Property . ?i ?p ?v }")
    assert code == 0 and int(json.loads(out)["results"]["bindings"][0]["n"]["value"]) == len(build.triples)

    code, out, _ = _k3m(capsys, "kg", "load", hostile_build, "--graph", "--database", database)
    again = json.loads(out)["graph"]
    assert code == 0 and (again["nodes_created"], again["relationships_created"]) == (0, 0)


def test_cypher_parameters_carry_hostile_text_as_data(capsys, data_dir, hostile_build, hostile):
    database = f"cli{next(_names)}"
    _k3m(capsys, "kg", "load", hostile_build, "--graph", "--database", database)
    query = "MATCH (i:Item {id: $id}) RETURN i.id AS id, $echo AS echo, $n + 1 AS n"
    echo = "a\n'}) DETACH DELETE n // `x` {y} RETURN 1"
    code, out, _ = _k3m(capsys, "kg", "cypher", query, "--param", f"id={hostile.id}", "--param", f"echo={echo}",
                        "--param-json", "n=41", "--database", database, "--json")
    assert code == 0 and json.loads(out) == [{"id": hostile.id, "echo": echo, "n": 42}]
    code, out, _ = _k3m(capsys, "kg", "cypher", "MATCH (i:Item) RETURN count(i) AS n", "--database", database)
    lines = out.splitlines()
    assert (lines[0], lines[1], lines[2].strip()) == ("n", "-" * len(lines[1]), str(CatalogBuild.open(hostile_build).num_items))
    assert lines[3].startswith("(1 row, ") and lines[3].endswith(" ms)")


def test_stats_and_exports(capsys, tmp_path, data_dir, hostile_build):
    build = CatalogBuild.open(hostile_build)
    code, out, _ = _k3m(capsys, "kg", "stats", hostile_build, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["triples"] == len(build.triples) and stats["items_without_triples"] == 1
    code, out, _ = _k3m(capsys, "kg", "stats", hostile_build)
    assert code == 0 and f"triples {len(build.triples)}" in out

    _k3m(capsys, "kg", "load", hostile_build, "--rdf")
    ttl = tmp_path / "pkg.ttl"
    code, _, err = _k3m(capsys, "kg", "export", hostile_build, "--format", "turtle", "-o", ttl)
    assert code == 0 and ttl.read_text().startswith("@prefix") and "wrote" in err
    code, _, err = _k3m(capsys, "kg", "export", hostile_build, "--format", "dgl", "-o", tmp_path / "g.bin")
    assert code == 0 or (code == 2 and "DGL cannot be loaded" in err)


def test_sparql_without_a_store_says_what_to_run(capsys, tmp_path, hostile_build, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    code, _, err = _k3m(capsys, "kg", "sparql", hostile_build, "SELECT * WHERE { ?s ?p ?o }")
    assert code == 2 and "k3m kg load BUILD --rdf" in err


def test_serve_detached_then_stop(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    code, _, err = _k3m(capsys, "kg", "serve", "--detach", "--heap", "512m", "--database", "shop")
    server = embedded_server.running(tmp_path)
    try:
        assert code == 0 and server is not None and server.uri in err
        assert "  databases: shop (default: shop;" in err  # the databases there are, not a guess
    finally:
        code, _, err = _k3m(capsys, "kg", "stop")
    assert code == 0 and "stopped" in err and embedded_server.running(tmp_path) is None


def test_serve_errors_are_one_line(capsys, tmp_path, monkeypatch, kg_server, kg_data_dir):
    import socket

    monkeypatch.setenv(DATA_DIR_ENV, str(kg_data_dir))
    code, _, err = _k3m(capsys, "kg", "serve", "--detach")  # the session's server already serves it
    assert code == 2 and err == (f"k3m kg: error: an embedded server already serves {kg_data_dir} ({kg_server.uri}, "
                                 f"pid {kg_server.pid}); use it, or `k3m kg stop` first\n")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = _k3m(capsys, "kg", "serve", "--detach", "--port", port)
    assert code == 2 and err.startswith(f"k3m kg: error: --port {port}: another program listens on 127.0.0.1:{port}")
    code, _, err = _k3m(capsys, "kg", "serve", "--detach", "--database", "my shop")
    assert code == 2 and err == ("k3m kg: error: database name 'my shop': use 1-64 letters, digits, '_' or '-' "
                                 "(not starting with '-')\n")
    assert embedded_server.running(tmp_path) is None


def test_bad_names_and_outputs_are_one_line(capsys, tmp_path, data_dir, hostile_build):
    code, _, err = _k3m(capsys, "kg", "load", hostile_build, "--graph", "--database", "../x")
    assert code == 2 and err.startswith("k3m kg: error: database name '../x': ")
    code, _, err = _k3m(capsys, "kg", "cypher", "RETURN 1", "--database", "never_created")
    assert code == 2 and err.startswith("k3m kg: error: database 'never_created' does not exist on the embedded server")
    code, _, err = _k3m(capsys, "kg", "load", tmp_path, "--rdf")
    assert code == 2 and err == f"k3m kg: error: {tmp_path}: not a catalog build (no manifest.json); run `k3m import` first\n"
    _k3m(capsys, "kg", "load", hostile_build, "--rdf")
    code, _, err = _k3m(capsys, "kg", "export", hostile_build, "--format", "turtle", "-o", tmp_path)
    assert code == 2 and err == f"k3m kg: error: {tmp_path}: is a directory; -o names the file to write\n"
    code, _, err = _k3m(capsys, "kg", "sparql", hostile_build, "SELEC * WHERE { ?s ?p ?o }")
    assert code == 2 and err.startswith("k3m kg: error: the SPARQL query does not parse: ") and err.count("\n") == 1


def test_a_build_remembers_its_database(capsys, data_dir, fashion_slice_build, slice_view):
    view = slice_view("remembers")
    database = f"cli{next(_names)}"
    code, out, _ = _k3m(capsys, "kg", "load", view, "--graph", "--database", database)
    assert code == 0 and json.loads((view / "graph.json").read_text())["database"] == database
    code, out, _ = _k3m(capsys, "kg", "load", view, "--graph")  # no --database: the one it was loaded into
    graph = json.loads(out)["graph"]
    assert code == 0 and graph["database"] == database and graph["items_unchanged"] == graph["items"] == 600
    assert database in embedded_server.running(data_dir).list_databases()



def test_stats_report_label_leakage(capsys, fashion_slice_build):
    code, out, _ = _k3m(capsys, "kg", "stats", fashion_slice_build, "--json")
    leakage = json.loads(out)["label_leakage"]
    assert code == 0 and leakage["suspects"] == [] and leakage["not_leakage"] == ["brandName"]
    assert len(leakage["properties"]) == len(CatalogBuild.open(fashion_slice_build).properties)  # each property
    assert leakage["properties"][0]["accuracy"] >= leakage["properties"][1]["accuracy"]
    code, out, _ = _k3m(capsys, "kg", "stats", fashion_slice_build)
    assert code == 0 and f"always guessing {leakage['baseline_category']!r}: {100 * leakage['baseline']:.1f}%" in out


def test_a_server_dying_during_a_load_is_one_error_line(fashion_slice_build, tmp_path):
    """The embedded server killed in the middle of `k3m kg load`: the command used to print
    the driver's retry warnings for a minute, then a two-line socket error."""
    import os
    import signal
    import subprocess
    import sys

    data = tmp_path / "data"
    load = subprocess.Popen([sys.executable, "-m", "k3m", "kg", "load", str(fashion_slice_build), "--graph",
                             "--data-dir", str(data), "--items-per-batch", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in load.stderr:
            if "graph items written" in line:  # the first batch is in: the load is under way
                break
        pid = json.loads((data / "arcadedb" / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        rest = load.stderr.read()
        load.wait(120)
    finally:
        if load.poll() is None:
            load.kill()
    errors = [line for line in rest.splitlines() if not line.startswith("[k3m] ")]
    assert load.returncode == 1 and errors == [
        f"k3m kg: error: the embedded graph server (pid {pid}) died during the command; see "
        f"{data / 'arcadedb' / 'server.log'}; run the command again (a load resumes where it stopped)"]
