"""``python -m itembank_server serve --root DIR ...``: run the item bank server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from .generator import generate_bank
from .pagination import COUNT_LIMIT
from .server import TOKENS_ENV, ItemBankServer, tokens_from_env
from .store import ItemBank


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="itembank-server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve an item bank (GitLab REST v4 subset and git smart HTTP)")
    serve.add_argument("--root", type=Path, required=True, help="directory holding the bank (created if missing)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8929, help="0 picks a free port")
    serve.add_argument(
        "--token",
        action="extend",
        nargs="+",
        default=[],
        metavar="T",
        help=f"accepted access token(s); also ${TOKENS_ENV}, comma separated",
    )
    serve.add_argument("--group", default="iat-dev", help="group holding the items")
    serve.add_argument("--generate", type=int, default=0, metavar="N", help="generate N items if the group has none")
    serve.add_argument("--seed", type=int, default=0, help="generator seed")
    serve.add_argument("--external-url", help="base URL clients use, if not http://HOST:PORT")
    serve.add_argument(
        "--count-limit",
        type=int,
        default=COUNT_LIMIT,
        metavar="N",
        help="above N records listings leave out X-Total, X-Total-Pages and rel=last (GitLab: 10000)",
    )
    serve.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    tokens = set(args.token) | tokens_from_env()
    if not tokens:
        tokens = {secrets.token_urlsafe(20)}
    bank = ItemBank(args.root)
    group = bank.create_group(args.group)
    existing = bank.count_projects(group["id"])
    if args.generate and existing == 0:
        started = time.monotonic()
        generate_bank(bank, args.group, count=args.generate, seed=args.seed)
        print(f"generated {args.generate} items in {time.monotonic() - started:.1f}s", flush=True)
    elif args.generate:
        print(f"group {args.group} already has {existing} projects; not generating", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = ItemBankServer(
        bank, args.host, args.port, tokens, external_url=args.external_url, count_limit=args.count_limit
    ).start()
    print(f"url: {server.url}", flush=True)
    print(f"group: {args.group}", flush=True)
    print(f"projects: {bank.count_projects(group['id'])}", flush=True)
    for token in sorted(tokens):
        print(f"token: {token}", flush=True)
    stop.wait()
    server.stop()
    bank.close()
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
