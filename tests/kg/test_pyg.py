"""Importing the graph views (and so PyG) prints no FutureWarning about torch.jit.script."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pyg_imports_quietly():
    done = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", "import kg.hetero, torch_geometric.nn"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
