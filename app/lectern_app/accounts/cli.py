"""`python -m lectern_app admin ...`: manage users inside the image (no default password).

  admin create-user NAME [--email E] [--admin] [--password-stdin]
  admin reset-password NAME [--password-stdin] [--keep-tokens]
  admin disable NAME | admin enable NAME
  admin list-users

Without --password-stdin the password is asked twice on the terminal (never an argument:
it would show in `ps` and shell history). Uses DATABASE_URL / DATA_DIR like the server.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from .config import AccountSettings
from .service import AccountError, Accounts


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise SystemExit("no terminal: pass the password on stdin with --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise SystemExit("passwords differ")
    return first


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m lectern_app admin")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create-user", help="create a user (an admin with --admin)")
    c.add_argument("username")
    c.add_argument("--email")
    c.add_argument("--admin", action="store_true")
    c.add_argument("--password-stdin", action="store_true")
    r = sub.add_parser("reset-password", help="set a new password")
    r.add_argument("username")
    r.add_argument("--password-stdin", action="store_true")
    r.add_argument(
        "--keep-tokens",
        action="store_true",
        help="keep the user's API tokens (by default a reset revokes them with every session)",
    )
    for name in ("disable", "enable"):
        sub.add_parser(name, help=f"{name} a user").add_argument("username")
    sub.add_parser("list-users", help="print the users as JSON")
    args = ap.parse_args(argv)

    data_dir = Path(os.environ.get("DATA_DIR", "").strip() or "/data")
    acc = Accounts(AccountSettings.from_env(data_dir), data_dir)
    acc.start()
    try:
        if args.cmd == "list-users":
            print(json.dumps(acc.list_users(), indent=2))
            return 0
        if args.cmd == "create-user":
            u = acc.create_user(
                args.username,
                _password(args.password_stdin),
                args.email,
                "admin" if args.admin else "user",
            )
            print(f"created {u['role']} {u['username']} (id {u['id']})")
            return 0
        found = [u for u in acc.list_users() if u["username"].lower() == args.username.lower()]
        if not found:
            print(f"no user {args.username}", file=sys.stderr)
            return 1
        uid = int(found[0]["id"])
        if args.cmd == "reset-password":
            u = acc.update_user(
                uid, password=_password(args.password_stdin), keep_tokens=args.keep_tokens
            )
            n = int(u.get("revoked_api_tokens", 0))
            tokens = (
                "its API tokens are kept (--keep-tokens)"
                if args.keep_tokens
                else f"{n} API token{'s' if n != 1 else ''} revoked"
            )
            print(f"password of {args.username} reset; every session ended; {tokens}")
        else:
            acc.update_user(uid, disabled=args.cmd == "disable")
            print(f"{args.username} {args.cmd}d")
        return 0
    except AccountError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    finally:
        acc.close()
