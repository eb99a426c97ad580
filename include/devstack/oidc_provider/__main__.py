"""``python -m devstack.oidc_provider serve|apply``: the test identity provider (see the package's docstring)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import DEFAULT_REALM, read_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.oidc_provider", description="A local OpenID Connect identity provider for login tests."
    )
    actions = parser.add_subparsers(dest="action", required=True)
    for name, text in (("serve", "make the users and clients, then serve"), ("apply", "make the users and clients")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", type=Path, required=True, help="the JSON configuration (users, clients)")
        action.add_argument("--state-dir", type=Path, required=True, help="database and keys, kept across restarts")
        if name == "serve":
            action.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
            action.add_argument("--port", type=int, default=8180)
            action.add_argument(
                "--issuer", default="", help="fixed issuer URL (default: from the host each request names)"
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = read_config(args.config)
    from . import server

    server.configure(args.state_dir.resolve(), config.get("realm", DEFAULT_REALM), getattr(args, "issuer", ""))
    server.migrate()
    print(json.dumps({"applied": server.apply(config)}), flush=True)
    if args.action == "serve":
        server.serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
