"""`k3m serve-api` as a user runs it: a real process on a free port, reusing the session's
embedded graph server, answering HTTP; refusing to listen beyond loopback without a token."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from k3m.serve.cli import is_loopback, resolve_token


def k3m(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "k3m", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.4", False),
                                            ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_listening_beyond_loopback_needs_a_token(monkeypatch, query_build):
    monkeypatch.delenv("K3M_API_TOKEN", raising=False)
    with pytest.raises(ValueError, match="listens beyond this machine: give a token"):
        resolve_token("0.0.0.0", None)
    assert resolve_token("0.0.0.0", "t") == "t" and resolve_token("127.0.0.1", None) is None
    monkeypatch.setenv("K3M_API_TOKEN", "from-env")
    assert resolve_token("0.0.0.0", None) == "from-env"
    env = {k: v for k, v in os.environ.items() if k != "K3M_API_TOKEN"}
    process = k3m("serve-api", str(query_build), "--host", "0.0.0.0", env=env)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and err.strip().count("\n") == 0
    assert err.startswith("k3m serve-api: error: --host 0.0.0.0 listens beyond this machine: give a token")


def test_serve_api_answers_http_until_stopped(loaded_db, query_build, query_store, kg_data_dir):
    env = {**os.environ, "K3M_DATA_DIR": str(kg_data_dir), "K3M_API_TOKEN": "tok"}
    process = k3m("serve-api", str(query_build), "--port", "0", "--database", loaded_db.database, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "http://" not in line:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            line = process.stderr.readline()
        url = re.search(r"http://\S+", line).group(0)
        assert "600 items" in line and "token required" in line
        item = str(query_store.ids[3])
        request = urllib.request.Request(f"{url}/items/{item}/similar?k=3", headers={"Authorization": "Bearer tok"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        assert response.status == 200 and body["item"]["id"] == item and len(body["hits"]) == 3
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
