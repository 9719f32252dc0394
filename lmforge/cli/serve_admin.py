"""CLI verbs ``lmforge keys ...`` and ``lmforge audit ...``: the API keys and the audit log
of the HTTP server (:mod:`lmforge.serve.keys`, :mod:`lmforge.serve.audit`), kept in one
SQLite file (``--db``, else ``$LMFORGE_DB``, else ``~/.lmforge/serve.db``)."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import LmforgeError
from . import _echo, app

keys_app = typer.Typer(help="API keys of the HTTP server: create, list, revoke.",
                       no_args_is_help=True)
audit_app = typer.Typer(help="The server's append-only audit log: tail, export.",
                        no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

DbOption = Annotated[Path | None, typer.Option(
    "--db", help="SQLite file of keys and audit log [default: $LMFORGE_DB, else "
                 "~/.lmforge/serve.db].", metavar="PATH")]


def _db(db: Path | None, create: bool = False) -> Path:
    """The database path; one that should already exist and does not is an error (a typo
    in --db must not quietly start an empty database)."""
    from ..serve.keys import default_db_path

    path = db if db is not None else default_db_path()
    if not create and not path.exists():
        raise LmforgeError(f"no key database at {path}; create a key first: lmforge keys "
                           "create --role admin --name NAME")
    return path


def _table(rows: list[list[str]]) -> None:
    """Print rows as left-aligned columns, the first row being the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _tokens(prompt: int | None, completion: int | None) -> str:
    """``prompt+completion`` token counts of an audit row, ``-`` when it has none."""
    if prompt is None and completion is None:
        return "-"
    return f"{_text(prompt)}+{_text(completion)}"


def _record_action(path: Path, route: str, detail: str) -> None:
    """Audit a key-management action done from the command line."""
    from ..serve.audit import AuditLog

    AuditLog(path).record(method="CLI", route=route, status=0, detail=detail)


# ----------------------------------------------------------------------------- keys

@keys_app.command("create", epilog="Example: lmforge keys create --role user --name "
                                   "chat-frontend --rpm 60 --tpm 20000")
def keys_create(
    role: Annotated[str, typer.Option(help="admin (everything), user (inference and model "
                                           "listing) or reader (model listing, metrics).")],
    name: Annotated[str, typer.Option(help="Who or what uses the key; unique among active "
                                           "keys.")],
    rpm: Annotated[int | None, typer.Option(help="Requests per minute [default: unlimited].")]
    = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens (prompt + completion) per minute "
                                                 "[default: unlimited].")] = None,
    db: DbOption = None,
):
    """Create an API key and print its secret, once: only its hash is stored."""
    from ..serve.keys import KeyStore

    path = _db(db, create=True)
    record, secret = KeyStore(path).create(role, name, requests_per_minute=rpm,
                                           tokens_per_minute=tpm)
    _record_action(path, "keys create",
                   f"created {record.id} ({record.name}, role {record.role})")
    _echo(secret)
    typer.echo(f"created {record.id} ({record.name}, role {record.role}); the secret above "
               "will not be shown again", err=True)


@keys_app.command("list", epilog="Example: lmforge keys list --all")
def keys_list(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    db: DbOption = None,
):
    """List the keys: id, name, role, secret prefix, dates and limits (never a secret)."""
    from ..serve.audit import format_time
    from ..serve.keys import SECRET_PREFIX, KeyStore

    records = KeyStore(_db(db)).list(include_revoked=all_)
    if json_:
        _echo(json.dumps([dataclasses.asdict(r) for r in records], ensure_ascii=False))
        return
    if not records:
        typer.echo("no keys" if all_ else "no active keys (--all shows revoked ones)",
                   err=True)
        return
    _table([["ID", "NAME", "ROLE", "PREFIX", "CREATED", "REVOKED", "RPM", "TPM"]] + [
        [r.id, r.name, r.role, SECRET_PREFIX + r.prefix, format_time(r.created),
         "-" if r.revoked is None else format_time(r.revoked), _text(r.requests_per_minute),
         _text(r.tokens_per_minute)] for r in records])


@keys_app.command("revoke", epilog="Example: lmforge keys revoke chat-frontend")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (key_...) or the name of an active "
                                            "key.", metavar="ID_OR_NAME")],
    db: DbOption = None,
):
    """Revoke a key: requests with it are refused from now on. It cannot be undone."""
    from ..serve.keys import KeyStore

    path = _db(db)
    record = KeyStore(path).revoke(key)
    _record_action(path, "keys revoke", f"revoked {record.id} ({record.name})")
    _echo(f"revoked {record.id} ({record.name})")


# ----------------------------------------------------------------------------- audit

@audit_app.command("tail", epilog="Example: lmforge audit tail -n 50")
def audit_tail(
    n: Annotated[int, typer.Option("-n", "--lines", help="How many rows, newest last.")] = 20,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    db: DbOption = None,
):
    """Show the newest rows of the audit log."""
    from ..serve.audit import AuditLog, format_time

    rows = AuditLog(_db(db)).tail(n)
    if json_:
        for row in rows:
            _echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        typer.echo("the audit log is empty", err=True)
        return
    _table([["TIME", "STATUS", "METHOD", "ROUTE", "KEY", "ROLE", "MODEL", "LATENCY",
             "TOKENS", "DETAIL"]] + [
        [format_time(r["time"]), _text(r["status"]), _text(r["method"]), _text(r["route"]),
         _text(r["key_id"]), _text(r["role"]),
         _text(r["model"]) + ("" if r["model_version"] is None else f"@{r['model_version']}"),
         "-" if r["latency_s"] is None else f"{r['latency_s']:.3f}s",
         _tokens(r["prompt_tokens"], r["completion_tokens"]), _text(r["detail"])]
        for r in rows])


@audit_app.command("export", epilog="Example: lmforge audit export --since 7d --format csv "
                                    "--out audit.csv")
def audit_export(
    since: Annotated[str, typer.Option(
        help="ISO-8601 date or time (2026-12-05, 2026-12-05T10:00:00Z; no zone = UTC) or a "
             "duration before now (15m, 2h, 7d).", metavar="WHEN")],
    format_: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    out: Annotated[Path | None, typer.Option(
        help="File to write, atomically [default: standard output].")] = None,
    db: DbOption = None,
):
    """Export the audit rows since a time, oldest first, as JSON lines or CSV."""
    from ..io import atomic_open
    from ..serve.audit import AuditLog, parse_since

    log, start = AuditLog(_db(db)), parse_since(since)  # both checked before writing
    if out is None:
        log.export(start, format_, sys.stdout)
        return
    with atomic_open(out) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        count = log.export(start, format_, text)
        text.flush()
        text.detach()  # atomic_open still owns (fsyncs and renames) the file
    _echo(f"wrote {out} ({count} rows)")
