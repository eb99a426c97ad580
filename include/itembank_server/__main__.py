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

from .bank_store import ItemBank
from .generator import generate_bank
from .graphql_api import DEFAULT_TIMEOUT as GRAPHQL_TIMEOUT
from .pagination import COUNT_LIMIT
from .server import TOKENS_ENV, ItemBankServer, tokens_from_env
from .users import ROLES
from .visibility import LEVELS
from .webhook_delivery import DEFAULT_TIMEOUT, SystemHook


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m itembank_server", description=__doc__)
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
    serve.add_argument(
        "--user",
        action="append",
        default=[],
        type=user_spec,
        metavar="USERNAME:TOKEN:ROLE",
        help=f"a user with a personal access token and a ROLE in the group ({', '.join([*ROLES, 'admin'])}), "
        "created if absent; repeatable",
    )
    serve.add_argument("--group", default="iat-dev", help="group holding the items")
    serve.add_argument(
        "--visibility",
        choices=list(LEVELS),
        help="visibility of the group and of the items it generates (new groups and projects: private)",
    )
    serve.add_argument("--generate", type=int, default=0, metavar="N", help="generate N items if the group has none")
    serve.add_argument("--seed", type=int, default=0, help="generator seed")
    serve.add_argument("--external-url", help="base URL clients use, if not http://HOST:PORT")
    serve.add_argument(
        "--system-hook",
        action="append",
        default=[],
        type=_system_hook,
        metavar="URL[,token=T][,push_events=false][,tag_push_events=true][,enable_ssl_verification=false]",
        help="a system hook (repeatable): gets project_create/destroy/rename/transfer and push events",
    )
    serve.add_argument(
        "--hook-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="webhook request timeout (seconds)"
    )
    serve.add_argument(
        "--hook-ca-bundle", metavar="PEM", help="CA certificates for hooks verifying TLS (default: system trust store)"
    )
    serve.add_argument(
        "--count-limit",
        type=int,
        default=COUNT_LIMIT,
        metavar="N",
        help="above N records listings leave out X-Total, X-Total-Pages and rel=last (GitLab: 10000)",
    )
    serve.add_argument(
        "--graphql-timeout",
        type=float,
        default=GRAPHQL_TIMEOUT,
        metavar="S",
        help="seconds a GraphQL query may run before its remaining fields time out (GitLab: graphql_timeout, 30)",
    )
    serve.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def user_spec(text: str) -> tuple[str, str, str]:
    """``USERNAME:TOKEN:ROLE`` (the token may contain colons)."""
    username, _, rest = text.partition(":")
    token, _, role = rest.rpartition(":")
    if not username or not token or role not in (*ROLES, "admin"):
        roles = ", ".join([*ROLES, "admin"])
        raise argparse.ArgumentTypeError(f"expected USERNAME:TOKEN:ROLE with ROLE one of {roles}")
    return username, token, role


def ensure_users(bank: ItemBank, group: dict, specs: list[tuple[str, str, str]]) -> None:
    """Create each user, its token and its membership of ``group`` where absent (admins need no membership)."""
    for username, token, role in specs:
        user = bank.ensure_user(username, admin=role == "admin")
        bank.add_token(user["id"], token)
        if role != "admin" and bank.member(group["id"], user["id"]) is None:
            bank.add_member(group["id"], user["id"], ROLES[role])
        print(f"user: {username} ({role})", flush=True)


def _system_hook(spec: str) -> SystemHook:
    try:
        return SystemHook.parse(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    tokens = set(args.token) | tokens_from_env()
    if not tokens:
        tokens = {secrets.token_urlsafe(20)}
    bank = ItemBank(args.root)
    group = bank.create_group(args.group, visibility=args.visibility)
    existing = bank.count_projects(group["id"])
    if args.generate and existing == 0:
        started = time.monotonic()
        generate_bank(bank, args.group, count=args.generate, seed=args.seed, visibility=args.visibility or "private")
        print(f"generated {args.generate} items in {time.monotonic() - started:.1f}s", flush=True)
    elif args.generate:
        print(f"group {args.group} already has {existing} projects; not generating", flush=True)

    ensure_users(bank, group, args.user)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = ItemBankServer(
        bank,
        args.host,
        args.port,
        tokens,
        external_url=args.external_url,
        system_hooks=args.system_hook,
        hook_timeout=args.hook_timeout,
        hook_ca_bundle=args.hook_ca_bundle,
        count_limit=args.count_limit,
        graphql_timeout=args.graphql_timeout,
    ).start()
    print(f"url: {server.url}", flush=True)
    print(f"group: {args.group}", flush=True)
    print(f"projects: {bank.count_projects(group['id'])}", flush=True)
    for hook in server.hooks.system_hooks:
        print(f"system hook: {hook.url}", flush=True)
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
