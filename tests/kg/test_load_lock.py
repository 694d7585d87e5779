"""Two loads into one database: the second waits for the first and then writes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from etl.catalog_build import CatalogBuild
from kg.load_lock import load_lock

REPO = Path(__file__).resolve().parents[2]


def test_a_second_load_waits_for_the_first(graph_db, kg_data_dir, fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    env = {**os.environ, "K3M_DATA_DIR": str(kg_data_dir)}
    command = [sys.executable, "-m", "k3m", "kg", "load", str(fashion_slice_build), "--graph", "--database", graph_db.database]
    with load_lock(graph_db):  # a load holding the database
        second = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        waiting = ""
        while "waiting" not in waiting and time.monotonic() < deadline and second.poll() is None:
            waiting += second.stderr.readline()
        assert "another load into database" in waiting and second.poll() is None
        assert graph_db.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"] == 0  # it has written nothing
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert json.loads(out)["graph"]["items_created"] == 600


def test_concurrent_loads_of_one_build_give_the_exact_graph(graph_db, kg_data_dir, fashion_slice_build):
    """The issue's case: two `k3m kg load` at once. Both succeed, one writes everything, the
    other nothing, and the graph holds the build exactly once."""
    build = CatalogBuild.open(fashion_slice_build)
    env = {**os.environ, "K3M_DATA_DIR": str(kg_data_dir)}
    command = [sys.executable, "-m", "k3m", "kg", "load", str(fashion_slice_build), "--graph", "--database", graph_db.database]
    loads = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [load.communicate(timeout=300) for load in loads]
    assert [load.returncode for load in loads] == [0, 0], [err for _, err in results]
    created = sorted(json.loads(out)["graph"]["items_created"] for out, _ in results)
    assert created == [0, 600]
    assert graph_db.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"] == 600
    assert graph_db.run("MATCH (:Item)-[h:HAS]->() RETURN count(h) AS n")[0]["n"] == len(build.triples)
