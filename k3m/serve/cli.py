"""`k3m serve-api BUILD`: serve a build's similar items, completion and embeddings over HTTP.

    k3m serve-api data/builds/shop                       # 127.0.0.1:8000, /docs for the API
    k3m serve-api data/builds/shop --host 0.0.0.0 --token "$(cat token)"

Listens on 127.0.0.1 unless --host says otherwise; any other address needs a token
(--token or $K3M_API_TOKEN), which every request must then send as
``Authorization: Bearer TOKEN``. The graph is reached as by `k3m query` (Neo4j when
NEO4J_URI is set, else the embedded server of the data directory).
"""
from __future__ import annotations

import ipaddress
import os
import signal
import sys
from pathlib import Path

from etl.errors import InvalidValue

TOKEN_ENV = "K3M_API_TOKEN"
LOOPBACK_NAMES = ("localhost",)


def add_parser(subparsers) -> None:
    from k3m.query.vector_search import STRATEGIES

    p = subparsers.add_parser("serve-api", help="HTTP query service: similar items, completion, embeddings (index warm)",
                              description=__doc__.split("\n\n")[0] + " See docs/query.md.")
    p.add_argument("build", type=Path, help="the catalog build whose embeddings are served")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = a free one)")
    p.add_argument("--token", help=f"bearer token every request must send (default ${TOKEN_ENV}, which, unlike an "
                                   f"argument, other users cannot read in the process list)")
    p.add_argument("--model", dest="model_id", help="embeddings of this model id (default: the newest in the build)")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto", help="vector search strategy (default auto)")
    p.add_argument("--log-level", default="warning", help="uvicorn's log level (default warning)")
    p.add_argument("--database", help="graph database (default: the one the build was loaded into, else k3m)")
    p.add_argument("--data-dir", type=Path, help="state directory of the embedded graph (default $K3M_DATA_DIR or ./data)")
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token in force; a ValueError when the address is reachable from elsewhere without one."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise InvalidValue(f"--host {host} listens beyond this machine: give a token (--token or ${TOKEN_ENV}); "
                         f"requests then need 'Authorization: Bearer TOKEN'")
    return token


def run(args) -> int:
    import uvicorn

    from k3m.query.connection import apply_data_dir
    from k3m.serve.app import create_app
    from k3m.serve.service import QueryService, ServiceSettings

    token = resolve_token(args.host, args.token)
    if not 0 <= args.port <= 65535:
        raise InvalidValue(f"--port must be 0-65535, got {args.port}")
    apply_data_dir(args.data_dir)
    service = QueryService(ServiceSettings(build=args.build, model_id=args.model_id, database=args.database,
                                           strategy=args.strategy))
    try:
        health = service.health()
        config = uvicorn.Config(create_app(service, token), host=args.host, port=args.port, log_level=args.log_level,
                                access_log=False)
        server = uvicorn.Server(config)
        _announce(server, health, token is not None)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
        # handler in place before it: a no-op here, so the graph connection closes and the
        # command exits 0 like `k3m kg serve`
        before = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run()
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)
    finally:
        service.close()
    print("k3m serve-api: stopped", file=sys.stderr)
    return 0


def _announce(server, health: dict, guarded: bool) -> None:
    """One line on stderr once the socket listens (with the real port when --port 0)."""
    import threading

    def when_started():
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
            host, port = sockets[0].getsockname()[:2] if sockets else (server.config.host, server.config.port)
            index = health["index"]["kind"]
            print(f"k3m serve-api: http://{host}:{port} (docs at /docs) - {health['items']} items of "
                  f"{health['model_id']}, {health['strategy']} search ({index} index), graph database "
                  f"{health['graph']['database']}{', token required' if guarded else ''}", file=sys.stderr, flush=True)

    threading.Thread(target=when_started, daemon=True).start()
