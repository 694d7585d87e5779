"""The embedded graph database: ArcadeDB (``arcadedb-embedded``) with its Bolt plugin.

The server runs in its own process (``python -m kg.embedded_server``), so that one JVM
serves every `k3m` command and test, and the Python process talking to it over Bolt stays
free of JPype. Files live under ``<data_dir>/arcadedb/``::

    databases/    ArcadeDB's root path (databases, config with the server users)
    password      the generated root password, mode 0600, created once

Everything under it is the user's alone: the folder is 0700 and every file the server
writes is 0600 (it runs with umask 077; older files are tightened at start), as the graph
holds the catalog and the password.
    server.json   state of the running server: pid, bolt/http ports, database (0600)
    server.log    the server process's output
    log/          ArcadeDB's own application log (it writes to ./log of its cwd)

Every listener (Bolt, HTTP) binds 127.0.0.1 only. Python API::

    srv = start(data_dir=..., port=None)   # spawn; port None = a free port
    srv.uri, srv.auth, srv.database         # what the neo4j driver needs
    srv.stop()                              # clean shutdown (SIGTERM, waits)
    with start(...) as srv: ...             # stop on exit
    running(data_dir) -> EmbeddedServer | None   # reuse one already serving that dir
    ensure_running(settings) -> (EmbeddedServer, started_here)
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from etl.atomic import pid_alive, write_text
from etl.errors import InvalidValue, UserError
from kg.paths import data_dir as default_data_dir

HOST = "127.0.0.1"
USER = "root"
BOLT_PLUGIN = "Bolt:com.arcadedb.bolt.BoltProtocolPlugin"
_MODULE = "kg.embedded_server"


class ServerError(RuntimeError):
    """The embedded server could not be started, reached or stopped."""


class ServerAlreadyRunning(UserError, ServerError):
    """`k3m kg serve` while a server already serves the data directory."""


class PortInUse(UserError, ServerError):
    """The port asked for is taken by another program."""


_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")


def check_database_name(name: str) -> str:
    """Database names become file names on the server: letters, digits, '_' and '-' only."""
    if not isinstance(name, str) or not _DATABASE_NAME.match(name):
        raise InvalidValue(f"database name {name!r}: use 1-64 letters, digits, '_' or '-' (not starting with '-')")
    return name


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path = field(default_factory=default_data_dir)
    bolt_port: int | None = None  # None: a free port, chosen at start
    http_port: int | None = None  # ArcadeDB always runs its HTTP API; also loopback only
    database: str = "k3m"  # created at start when missing; Bolt's default database
    heap: str = "2g"  # JVM -Xmx; the fashion44k load peaks well below 1 GiB
    start_timeout_s: float = 120.0  # a cold JVM on a busy 2-core box takes ~3-10 s
    # Stop when the process that started the server ends (a killed test run or command must
    # not leave a JVM behind); `k3m kg serve --detach` turns it off.
    stop_with_caller: bool = True

    @property
    def home(self) -> Path:
        return Path(self.data_dir) / "arcadedb"

    def __post_init__(self):
        check_database_name(self.database)
        for port in (self.bolt_port, self.http_port):
            if port is not None and not 0 < port < 65536:
                raise InvalidValue(f"port must be within 1..65535, got {port}")


@dataclass
class EmbeddedServer:
    """A running embedded server (started here or found running)."""

    home: Path
    pid: int
    bolt_port: int
    http_port: int
    database: str
    password: str = field(repr=False)
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"bolt://{HOST}:{self.bolt_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, self.password)

    def create_database(self, name: str) -> None:
        """Create another database on this server (no-op when it exists).

        Bolt cannot create databases, so this goes through ArcadeDB's HTTP API with the
        root credentials; the name travels as a JSON value checked against a strict
        pattern, never as free text.
        """
        check_database_name(name)
        if name in self.list_databases():
            return
        # two commands may create the same database at once: only one creation can win
        with _file_lock(self.home / "create-database.lock"):
            if name in self.list_databases():
                return
            self._http("POST", "/api/v1/server", {"command": f"create database {name}"})

    def writes(self, database: str, query: str, params: dict | None = None) -> bool:
        """Whether ArcadeDB's own Cypher parser takes ``query`` for a write (CREATE, MERGE,
        SET, DELETE, REMOVE, schema and user commands, ``CALL {...}`` with any of those, ...).

        Its Bolt plugin ignores the READ access mode and runs writes in a read transaction,
        and schema commands are not undone by a rollback; its HTTP query endpoint refuses
        every statement that is not idempotent before running it. A read runs there too,
        stopped at its first row. Any other refusal (a syntax error, a missing parameter) is
        not a write: running the query over Bolt reports it."""
        check_database_name(database)
        try:
            self._http("POST", f"/api/v1/query/{database}",
                       {"language": "cypher", "command": query, "params": params or {}, "limit": 1},
                       json_default=str)
        except ServerError as exc:
            return "QueryNotIdempotentException" in str(exc)
        return False

    def list_databases(self) -> list[str]:
        return sorted(self._http("POST", "/api/v1/server", {"command": "list databases"})["result"])

    def _http(self, method: str, path: str, body: dict, json_default=None) -> dict:
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.http_port}{path}",
            data=json.dumps(body, default=json_default).encode(),
            method=method,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ServerError(f"ArcadeDB HTTP {path}: {exc.code} {exc.read()[:300]!r}") from exc

    def stop(self, timeout_s: float = 60.0) -> None:
        """Shut the server down cleanly (SIGTERM) and wait for its process to end; one that
        has not ended after ``timeout_s`` is killed and ServerError raised."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self._wait_exit(timeout_s):
            return
        os.kill(self.pid, signal.SIGKILL)
        self._wait_exit(10.0)
        raise ServerError(f"embedded server pid {self.pid} did not stop within {timeout_s:.0f} s; killed "
                          f"(ArcadeDB recovers its databases from the journal at the next start)")

    def _wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None:
                if self._process.poll() is not None:
                    return True
            elif not pid_alive(self.pid):
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> "EmbeddedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- finding and starting -------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def running(data_dir: Path | None = None) -> EmbeddedServer | None:
    """The server serving ``data_dir`` if one is up and answering, else None."""
    home = ServerSettings(data_dir=Path(data_dir or default_data_dir())).home
    state = _read_state(home)
    if state is None or not _is_our_server(state["pid"]) or not _port_open(state["bolt_port"]):
        return None
    return EmbeddedServer(
        home=home,
        pid=state["pid"],
        bolt_port=state["bolt_port"],
        http_port=state["http_port"],
        database=state["database"],
        password=_password_path(home).read_text().strip(),
    )


def start(port: int | None = None, data_dir: Path | None = None, settings: ServerSettings | None = None) -> EmbeddedServer:
    """Spawn a server for ``data_dir``; fails if one is already serving that directory."""
    settings = settings or ServerSettings(data_dir=Path(data_dir or default_data_dir()), bolt_port=port)
    with _start_lock(settings.home):
        found = running(settings.data_dir)
        if found is not None:
            raise ServerAlreadyRunning(f"an embedded server already serves {settings.data_dir} ({found.uri}, pid "
                                       f"{found.pid}); use it, or `k3m kg stop` first")
        for name, port in (("--port", settings.bolt_port), ("HTTP port", settings.http_port)):
            if port and _port_open(port):
                raise PortInUse(f"{name} {port}: another program listens on {HOST}:{port}; choose another port "
                                f"or leave it out for a free one")
        return _spawn(settings)


def ensure_running(settings: ServerSettings | None = None) -> tuple[EmbeddedServer, bool]:
    """Reuse the server serving ``settings.data_dir`` or start one; True when started here."""
    settings = settings or ServerSettings()
    with _start_lock(settings.home):
        found = running(settings.data_dir)
        if found is not None:
            return found, False
        return _spawn(settings), True


def stop(data_dir: Path | None = None, timeout_s: float = 60.0) -> bool:
    """Stop the server serving ``data_dir``; False when none was running."""
    server = running(data_dir)
    if server is None:
        return False
    server.stop(timeout_s)
    return True


def _spawn(settings: ServerSettings) -> EmbeddedServer:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    _private(home)
    password = _ensure_password(home)
    _state_path(home).unlink(missing_ok=True)
    args = [
        sys.executable, "-m", _MODULE,
        "--home", str(home),
        "--database", settings.database,
        "--heap", settings.heap,
    ]
    if settings.bolt_port:
        args += ["--bolt-port", str(settings.bolt_port)]
    if settings.http_port:
        args += ["--http-port", str(settings.http_port)]
    if settings.stop_with_caller:
        args += ["--watch-pid", str(os.getpid())]
    log = os.fdopen(os.open(home / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    # Own session: a ^C meant for the calling command does not kill a shared server.
    process = subprocess.Popen(args, cwd=home, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        state = _read_state(home)
        if state is not None and state["pid"] == process.pid and _port_open(state["bolt_port"]):
            return EmbeddedServer(home, process.pid, state["bolt_port"], state["http_port"], state["database"], password, process)
        if process.poll() is not None:
            taken = [p for p in (settings.bolt_port, settings.http_port) if p and _port_open(p)]
            if taken:  # taken between our check and the server's bind
                raise PortInUse(f"port {taken[0]}: another program listens on {HOST}:{taken[0]}; choose another port")
            raise ServerError(f"embedded server exited with {process.returncode}; see {home / 'server.log'}:\n"
                              f"{_log_tail(home)}")
        time.sleep(0.05)
    process.terminate()
    process.wait(30)
    raise ServerError(f"embedded server not ready within {settings.start_timeout_s:.0f} s:\n{_log_tail(home)}")


# -- files ----------------------------------------------------------------------------

def _private(home: Path) -> None:
    """``home`` and what is under it readable by the user only (data of servers started
    before this rule were group and world readable)."""
    for folder, _, files in os.walk(home):
        for path in [folder, *(os.path.join(folder, name) for name in files)]:
            try:
                mode = os.lstat(path).st_mode
                if mode & 0o077 and not stat.S_ISLNK(mode):
                    os.chmod(path, stat.S_IMODE(mode) & 0o700)
            except OSError:  # a file the running server just removed
                pass


def _password_path(home: Path) -> Path:
    return home / "password"


def _state_path(home: Path) -> Path:
    return home / "server.json"


def _ensure_password(home: Path) -> str:
    path = _password_path(home)
    if path.is_file():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip()
    # ArcadeDB keeps root's password in config/server-users.jsonl from the first start on:
    # a new password needs that file gone, or the old one would still be required.
    (home / "databases" / "config" / "server-users.jsonl").unlink(missing_ok=True)
    password = secrets.token_urlsafe(24)
    write_text(path, password + "\n", mode=0o600)  # 0600 from the first byte
    return password


def _read_state(home: Path) -> dict | None:
    try:
        return json.loads(_state_path(home).read_text())
    except (OSError, ValueError):
        return None


def _log_tail(home: Path, lines: int = 30) -> str:
    try:
        return "\n".join((home / "server.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server.log)"


@contextmanager
def _start_lock(home: Path):
    """Serialize start/reuse decisions across processes sharing one data directory."""
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / "start.lock"):
        yield


@contextmanager
def _file_lock(path: Path):
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_our_server(pid: int) -> bool:
    """Alive and really this module (a recycled pid must not pass for the server)."""
    if not pid_alive(pid):
        return False
    try:
        return _MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc (macOS): liveness plus the open port has to do
        return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


# -- the server process -----------------------------------------------------------------

def _serve(home: Path, database: str, bolt_port: int | None, http_port: int | None, heap: str,
           watch_pid: int | None) -> int:
    from arcadedb_embedded.jvm import start_jvm

    os.umask(0o077)  # every file and folder ArcadeDB creates: the user's only

    start_jvm(heap_size=heap)
    import arcadedb_embedded as adb

    stop_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_requested.set())

    password = _password_path(home).read_text().strip()
    for attempt in range(3):  # a free port can be taken between choosing and binding it
        ports = (bolt_port or free_port(), http_port or free_port())
        server = adb.create_server(
            str(home / "databases"),
            root_password=password,
            config={
                "host": HOST,
                "http_port": ports[1],
                "server_plugins": BOLT_PLUGIN,
                "bolt_port": ports[0],
                "bolt_host": HOST,
                "bolt_defaultDatabase": database,
            },
        )
        try:
            server.start()
            break
        except Exception:
            if attempt == 2 or (bolt_port and http_port):
                raise
    try:
        try:
            server.get_database(database)
        except Exception:
            server.create_database(database)
        state = {"pid": os.getpid(), "bolt_port": ports[0], "http_port": ports[1], "database": database, "started_at": time.time()}
        write_text(_state_path(home), json.dumps(state), mode=0o600)
        print(f"[k3m] embedded graph server ready: bolt://{HOST}:{ports[0]} database={database}", flush=True)
        # Wake up regularly: SIGTERM may be delivered to one of the JVM's threads, and Python
        # runs its handler only when the main thread gets control back; an untimed wait
        # would then sleep through it.
        while not stop_requested.wait(0.2):
            if watch_pid is not None and not pid_alive(watch_pid):
                print(f"[k3m] process {watch_pid} that started the server is gone", flush=True)
                break
    finally:
        _state_path(home).unlink(missing_ok=True)
        server.stop()
        print("[k3m] embedded graph server stopped", flush=True)
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the embedded ArcadeDB server (internal; use `k3m kg serve`).")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--database", default=ServerSettings.database)
    parser.add_argument("--bolt-port", type=int)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--heap", default=ServerSettings.heap)
    parser.add_argument("--watch-pid", type=int, help="stop when this process ends")
    args = parser.parse_args(argv)
    return _serve(args.home.resolve(), args.database, args.bolt_port, args.http_port, args.heap, args.watch_pid)


if __name__ == "__main__":
    sys.exit(_main())
