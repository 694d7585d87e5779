"""The embedded ArcadeDB lifecycle: loopback only, private password, reuse, clean shutdown."""
from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError

from kg import embedded_server
from kg.embedded_server import HOST, ServerError, ServerSettings

REPO = Path(__file__).resolve().parents[2]


# 127.0.0.1 as /proc/net writes it (little-endian hex), plain and IPv4-mapped in IPv6 (Java
# binds IPv6 sockets); all-interfaces would be 00000000 or 32 zeros.
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                found.add(address)
    return found


def test_server_answers_bolt_with_generated_password(kg_server):
    password_file = kg_server.home / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((kg_server.home / "server.json").stat().st_mode) == 0o600
    assert len(kg_server.password) >= 24 and password_file.read_text().strip() == kg_server.password
    with GraphDatabase.driver(kg_server.uri, auth=kg_server.auth) as driver:
        records, _, _ = driver.execute_query("RETURN $x AS x", x=41, database_=kg_server.database)
        assert records[0]["x"] == 41
    with GraphDatabase.driver(kg_server.uri, auth=("root", kg_server.password + "x")) as driver:
        with pytest.raises(AuthError):
            driver.verify_connectivity()


def test_every_listener_is_loopback_only(kg_server):
    for port in (kg_server.bolt_port, kg_server.http_port):
        addresses = _listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses and addresses <= LOOPBACK, addresses


def test_running_server_is_found_and_reused(kg_server, kg_data_dir):
    found = embedded_server.running(kg_data_dir)
    assert (found.pid, found.bolt_port, found.password) == (kg_server.pid, kg_server.bolt_port, kg_server.password)
    reused, started = embedded_server.ensure_running(ServerSettings(data_dir=kg_data_dir))
    assert not started and reused.pid == kg_server.pid
    with pytest.raises(ServerError, match="already serves"):
        embedded_server.start(data_dir=kg_data_dir)


def test_start_on_chosen_port_and_clean_stop(tmp_path):
    port = embedded_server.free_port()
    server = embedded_server.start(port=port, data_dir=tmp_path)
    try:
        assert server.bolt_port == port and server.uri == f"bolt://{HOST}:{port}"
        assert embedded_server.running(tmp_path).pid == server.pid
    finally:
        server.stop()
    assert server._process.returncode == 0  # SIGTERM handled: ArcadeDB stopped, process exited normally
    assert not (server.home / "server.json").exists()
    assert embedded_server.running(tmp_path) is None
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=1).close()
    assert "embedded graph server stopped" in (server.home / "server.log").read_text()
    assert embedded_server.stop(tmp_path) is False


def test_server_stops_when_the_process_that_started_it_dies(tmp_path):
    """A killed test run or command must not leave a JVM behind."""
    code = ("import sys, time\nfrom kg import embedded_server\n"
            f"server = embedded_server.start(data_dir={str(tmp_path)!r})\n"
            "print(server.pid, flush=True)\ntime.sleep(600)\n")
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        server_pid = int(caller.stdout.readline())
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 60
    while embedded_server.pid_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not embedded_server.pid_alive(server_pid)
    log = (tmp_path / "arcadedb" / "server.log").read_text()
    assert "is gone" in log and "embedded graph server stopped" in log


def test_typed_errors_for_what_the_user_can_fix(kg_server, kg_data_dir, tmp_path):
    from kg.embedded_server import PortInUse, ServerAlreadyRunning

    with pytest.raises(ServerAlreadyRunning) as already:
        embedded_server.start(data_dir=kg_data_dir)
    assert already.value.exit_code == 2 and kg_server.uri in str(already.value)
    with pytest.raises(PortInUse) as taken:
        embedded_server.start(port=kg_server.bolt_port, data_dir=tmp_path)
    assert taken.value.exit_code == 2
    for bad in ("", "a b", "../etc", "-x", "x" * 65, "naïve"):
        with pytest.raises(ValueError, match="database name"):
            ServerSettings(data_dir=tmp_path, database=bad)
        with pytest.raises(ValueError, match="database name"):
            kg_server.create_database(bad)


def test_creating_one_database_twice_at_once(kg_server):
    import threading

    errors = []

    def create():
        try:
            kg_server.create_database("raced")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and "raced" in kg_server.list_databases()


def test_the_graph_files_are_the_users_only(kg_server, kg_data_dir, graph_db, hostile_build):
    """The databases used to be world-readable (0755/0644) beside a 0600 password."""
    from etl.catalog_build import CatalogBuild
    from kg.graph_load import load_graph

    load_graph(CatalogBuild.open(hostile_build), graph_db)  # a database with the catalog in it, and a load lock
    home = kg_data_dir / "arcadedb"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    exposed = [(str(p), oct(stat.S_IMODE(p.lstat().st_mode))) for p in home.rglob("*")
               if not p.is_symlink() and p.lstat().st_mode & 0o077]
    assert exposed == []
    assert any(p.parent.name == graph_db.database for p in (home / "databases").rglob("*"))
    assert any((home / "locks").iterdir())


def test_older_world_readable_files_are_tightened_at_start(tmp_path):
    home = tmp_path / "arcadedb"
    (home / "databases" / "old").mkdir(parents=True, mode=0o755)
    (home / "databases" / "old" / "bucket").write_text("catalog")
    (home / "databases" / "old" / "bucket").chmod(0o644)
    with embedded_server.start(data_dir=tmp_path):
        pass
    for path in [home, *home.rglob("*")]:
        assert not path.lstat().st_mode & 0o077, path
