"""The query commands start without torch, torch_geometric or transformers: a `k3m query`
call is a short process (imports: ~0.5 s instead of ~4 s), and so is the service."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "torch_geometric", "transformers")
# a similar-items call needs no table library either (the driver's optional pandas support
# and pyarrow's pandas paths are kept out: k3m.query.connection, k3m.embedding.store)
LIGHT = ("pandas",)
# runs the real command line, then says which heavy modules the process imported
PROBE = ("import json, sys\n"
         "from k3m.cli import main\n"
         "code = main(sys.argv[1:])\n"
         f"print(json.dumps({{'heavy': sorted(m for m in {HEAVY + LIGHT!r} if m in sys.modules)}}))\n"
         "sys.exit(code)\n")


@pytest.fixture(scope="module")
def run_cli(kg_data_dir):
    def run(*args) -> tuple[int, str, list[str]]:
        env = {**os.environ, "K3M_DATA_DIR": str(kg_data_dir)}
        done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300)
        lines = done.stdout.strip().splitlines()
        heavy = json.loads(lines[-1])["heavy"] if lines and lines[-1].startswith("{\"heavy\"") else None
        return done.returncode, done.stdout + done.stderr, heavy
    return run


def test_query_similar_complete_and_export_start_without_torch(run_cli, loaded_db, query_build, query_store, tmp_path):
    db = ["--database", loaded_db.database, "--build", str(query_build)]
    item = str(query_store.ids[0])
    for args in (["query", "similar", item, "--k", "5", "--same", "brandName", "--json", *db],
                 ["query", "complete", "--property", "baseColour", "--dry-run", "--limit", "20", "--json", *db],
                 ["query", "export", "MATCH (i:Item) RETURN i.id AS id LIMIT 10", "-o", str(tmp_path / "x.parquet"), *db],
                 ["query", "similar", "no-such-item", *db]):
        code, output, heavy = run_cli(*args)
        # complete and export read the build's tables (pandas); none of them imports torch
        assert heavy == ([] if args[1] == "similar" else [m for m in heavy if m in LIGHT]), (args, output)
        assert code == (2 if "no-such-item" in args else 0), output


def test_the_probe_sees_torch_where_it_is_imported():
    """The check itself can fail: the embedding code imports the model code."""
    done = subprocess.run([sys.executable, "-c", "import sys, k3m.embedding.embed; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True"
