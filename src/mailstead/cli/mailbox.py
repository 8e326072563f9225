"""``mailstead mailbox``: what is in a user's mailboxes, as ``doveadm mailbox``/``fetch`` show it.

Reads through the same store objects the IMAP server uses
(:mod:`mailstead.store.inspect`; with ``[storage] backend = "postgresql"``
the cluster's, :mod:`mailstead.store.pg_inspect`), so UIDs are the ones
clients see and an expunge here reaches every session, on every node. The
``--json`` shapes are documented in docs/cli.md and stay stable: fields may
be added, never renamed.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import sys
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING

import click

from mailstead.addresses import AddressError, canonical_address
from mailstead.cli.common import (
    Failure,
    echo_json,
    human_size,
    json_option,
    load,
    one_line_errors,
    open_directory,
    printable,
    rfc3339,
)
from mailstead.config import Config
from mailstead.events import EventSink
from mailstead.proto.imap.mime_words import decode_text
from mailstead.proto.imap.search import SearchQuery
from mailstead.proto.imap.storage import MailboxLike
from mailstead.store.account import Account
from mailstead.store.changes import ChangeReporter
from mailstead.store.inspect import (
    AnyAccount,
    InspectError,
    MessageSummary,
    expunge,
    folder_summaries,
    open_account,
    open_folder,
    parse_query,
    read_message,
    search,
    summaries,
)
from mailstead.store.paths import UnsafePathError
from mailstead.store.pg_inspect import cluster_pool, open_cluster_account
from mailstead.store.pg_schema import StoreUnavailable
from mailstead.store.search_index import SearchIndexUnavailable

if TYPE_CHECKING:
    from mailstead.webhooks.outbox import Outbox

__all__ = ["mailbox"]

# The header fields the readable view of `mailbox show` starts with, in order.
_SHOWN_FIELDS = ("From", "To", "Cc", "Reply-To", "Date", "Subject")
# Widths of the From column of `mailbox search` (longer ones end in "…").
_FROM_WIDTH = 40
# Folding white space left in a decoded field value.
_UNFOLD = re.compile(r"\r?\n[ \t]*|\t")


@click.group()
def mailbox() -> None:
    """Look into a user's mailboxes: folders, search, one message, expunge.

    \b
    Example:
      mailstead mailbox list alice@example.org
      mailstead mailbox search alice@example.org 'UNSEEN FROM bob'
      mailstead mailbox show alice@example.org INBOX 4
    """


def _address(config: Config, address: str) -> str:
    """``address`` canonical, and of a local domain."""
    try:
        canonical = canonical_address(address)
    except AddressError:
        raise Failure(f"{address!r} is not an address") from None
    domain = canonical.rpartition("@")[2]
    if domain not in config.domains:
        raise Failure(f"{address!r}: {domain} is not a local domain")
    return canonical


def _open(
    ctx: click.Context, address: str, events: EventSink | None = None
) -> tuple[str, AnyAccount | None]:
    config = load(ctx)
    canonical = _address(config, address)
    reporter = ChangeReporter(events, canonical)
    account: AnyAccount | None
    try:
        if config.storage.backend == "postgresql":
            account = open_cluster_account(
                cluster_pool(config.storage.dsn), canonical, reporter=reporter
            )
        else:
            account = open_account(
                config.storage.format, config.mail_root, canonical, reporter=reporter
            )
    except (UnsafePathError, StoreUnavailable) as exc:
        raise Failure(str(exc)) from None
    if account is None:
        with open_directory(config) as d:
            if canonical not in d.users():
                raise Failure(f"no such user {canonical} (and no mail stored for it)")
    return canonical, account


def _folder(account: AnyAccount | None, name: str) -> MailboxLike:
    if account is None:
        raise Failure(f"no folder {name!r} (nothing stored yet)")
    try:
        return open_folder(account, name)
    except InspectError as exc:
        raise Failure(str(exc)) from None


def _query(words: tuple[str, ...]) -> str:
    """The search program from the command line's words.

    One word is the query as written (``'FROM bob SUBJECT "a b"'``). Several
    are one key, value or parenthesis each, as the shell split them: a word
    with a space, a quote, a parenthesis or non-ASCII letters becomes an IMAP
    string (``SUBJECT 'a b'``).
    """
    if len(words) == 1:
        return words[0]
    out = []
    for word in words:
        if word in ("(", ")") or (
            word and word.isascii() and not any(c in word for c in ' \t"\\()')
        ):
            out.append(word)
        else:
            out.append('"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(out)


def _parse(words: tuple[str, ...]) -> SearchQuery:
    try:
        return parse_query(_query(words))
    except InspectError as exc:
        raise Failure(str(exc)) from None


# --- list --------------------------------------------------------------------------


@mailbox.command("list")
@click.argument("address")
@json_option
@click.pass_context
@one_line_errors
def mailbox_list(ctx: click.Context, address: str, as_json: bool) -> None:
    """List the folders of ADDRESS with their message counts, unseen messages and sizes.

    Works for Maildir, mbox and the cluster database alike. JSON:
    {"address", "folders": [{"name", "messages", "unseen", "size"}]} (size in octets).

    \b
    Example:
      mailstead mailbox list alice@example.org
      mailstead mailbox list alice@example.org --json
    """
    canonical, account = _open(ctx, address)
    folders = folder_summaries(account)
    if as_json:
        echo_json(
            {
                "address": canonical,
                "folders": [
                    {"name": f.name, "messages": f.messages, "unseen": f.unseen, "size": f.size}
                    for f in folders
                ],
            }
        )
        return
    width = max(len("folder"), *(len(printable(f.name)) for f in folders))
    click.echo(f"{'folder':<{width}}  {'messages':>8}  {'unseen':>6}  {'size':>9}")
    for f in folders:
        click.echo(
            f"{printable(f.name):<{width}}  {f.messages:>8}  {f.unseen:>6}  {human_size(f.size):>9}"
        )
    total = sum(f.messages for f in folders)
    click.echo(
        f"-- {human_size(sum(f.size for f in folders))} in {_count(total, 'message')},"
        f" {sum(f.unseen for f in folders)} unseen, in {_count(len(folders), 'folder')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- search ------------------------------------------------------------------------


def _summary_json(s: MessageSummary) -> dict[str, object]:
    return {
        "uid": s.uid,
        "flags": list(s.flags),
        "size": s.size,
        "received_at": rfc3339(s.internaldate),
        "date": s.date,
        "from": s.sender,
        "subject": s.subject,
    }


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@mailbox.command("search")
@click.argument("address")
@click.argument("query", nargs=-1, required=True)
@click.option("--folder", default="INBOX", show_default=True, help="The folder to search.")
@json_option
@click.pass_context
@one_line_errors
def mailbox_search(
    ctx: click.Context, address: str, query: tuple[str, ...], folder: str, as_json: bool
) -> None:
    """Find messages of ADDRESS with an IMAP SEARCH QUERY (RFC 9051 §6.4.4).

    The query is what an IMAP client sends after UID SEARCH: keys such as
    ALL, UNSEEN, FROM, SUBJECT, BODY, SINCE 1-Jan-2025, LARGER 100000,
    NOT, OR and parentheses. Given as one argument it is read as written;
    as several, each is one key or value. Prints each match's UID, the time
    it was received, From and Subject. JSON: {"address", "folder",
    "messages": [{"uid", "flags", "size", "received_at", "date", "from",
    "subject"}]}.

    \b
    Example:
      mailstead mailbox search alice@example.org 'UNSEEN FROM bob@example.net'
      mailstead mailbox search alice@example.org SUBJECT 'quarterly report' --folder Archive
      mailstead mailbox search alice@example.org 'OR LARGER 1000000 BEFORE 1-Jan-2025' --json
    """
    program = _parse(query)
    canonical, account = _open(ctx, address)
    box = _folder(account, folder)
    found = list(summaries(box, search(box, program)))
    if as_json:
        echo_json(
            {
                "address": canonical,
                "folder": box.name,
                "messages": [_summary_json(s) for s in found],
            }
        )
        return
    if not found:
        click.echo(f"no message in {printable(box.name)} matches")
        return
    uid_width = max(3, *(len(str(s.uid)) for s in found))
    click.echo(f"{'UID':>{uid_width}}  {'received':<20}  {'from':<{_FROM_WIDTH}}  subject")
    for s in found:
        sender = _clip(printable(s.sender), _FROM_WIDTH)
        click.echo(
            f"{s.uid:>{uid_width}}  {rfc3339(s.internaldate):<20}  {sender:<{_FROM_WIDTH}}"
            f"  {printable(s.subject)}"
        )
    click.echo(f"-- {_count(len(found), 'message')} in {printable(box.name)}")


# --- show --------------------------------------------------------------------------


def _parts(message: Message) -> tuple[str | None, str | None, list[dict[str, object]]]:
    """(text/plain, text/html, attachments) of a parsed message."""
    text = html = None
    attachments: list[dict[str, object]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        disposition = part.get_content_disposition()
        payload = part.get_payload(decode=True)
        body = payload if isinstance(payload, bytes) else b""
        if disposition != "attachment" and kind in ("text/plain", "text/html"):
            decoded = decode_text(body, part.get_content_charset())  # unknown: UTF-8
            if kind == "text/plain" and text is None:
                text = decoded
                continue
            if kind == "text/html" and html is None:
                html = decoded
                continue
        if part is message and disposition is None:
            continue
        attachments.append(
            {"filename": part.get_filename() or "", "content_type": kind, "size": len(body)}
        )
    return text, html, attachments


def _header_text(message: Message, name: str) -> list[str]:
    out = []
    for value in message.get_all(name) or []:
        try:
            text = str(value)
        except Exception:  # beyond the parser's leniency: the field as it came
            text = repr(value)
        out.append(_UNFOLD.sub(" ", text))  # RFC 5322 §2.2.3
    return out


def _readable_text(text: str | None, html: str | None) -> str:
    if text is not None:
        return text
    if html is not None:
        from mailstead.templates.text import html_to_text

        return html_to_text(html)
    return ""


@mailbox.command("show")
@click.argument("address")
@click.argument("folder")
@click.argument("uid", type=click.IntRange(min=1))
@click.option("--headers", "mode", flag_value="headers", help="Only the whole header, as stored.")
@click.option("--raw", "mode", flag_value="raw", help="The message exactly as stored.")
@json_option
@click.pass_context
@one_line_errors
def mailbox_show(
    ctx: click.Context, address: str, folder: str, uid: int, mode: str | None, as_json: bool
) -> None:
    """Show message UID of FOLDER of ADDRESS: its main header fields and its text.

    The text is the text/plain part, or the HTML part rendered as text when
    there is none; attachments are listed by name, type and size. --headers
    prints the whole header, --raw the message as stored (for a file or a
    pipe). Control characters are shown escaped (\\x1b), except with --raw.
    Reading does not mark the message seen. JSON: {"uid", "folder", "flags",
    "size", "received_at", "headers": [[name, value]], "text", "html",
    "attachments": [{"filename", "content_type", "size"}]}.

    \b
    Example:
      mailstead mailbox show alice@example.org INBOX 4
      mailstead mailbox show alice@example.org INBOX 4 --raw > message.eml
    """
    if mode is not None and as_json:
        raise Failure(f"--{mode} and --json do not go together")
    _canonical, account = _open(ctx, address)
    box = _folder(account, folder)
    try:
        raw = read_message(box, uid)
    except InspectError as exc:
        raise Failure(str(exc)) from None
    if mode == "raw":
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        return
    if mode == "headers":
        end = raw.find(b"\n\n")
        for line in (raw if end < 0 else raw[: end + 1]).decode("utf-8", "replace").splitlines():
            click.echo(printable(line))
        return
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text, html, attachments = _parts(message)
    record = box.messages[uid]
    if as_json:
        echo_json(
            {
                "uid": uid,
                "folder": box.name,
                "flags": list(record.flags),
                "size": record.size,
                "received_at": rfc3339(record.internaldate),
                "headers": [
                    [k, v] for k in _unique_names(message) for v in _header_text(message, k)
                ],
                "text": text,
                "html": html,
                "attachments": attachments,
            }
        )
        return
    for name in _SHOWN_FIELDS:
        for value in _header_text(message, name):
            click.echo(f"{name + ':':<9} {printable(value)}")
    flags = " ".join(record.flags) or "none"
    click.echo(
        f"-- UID {uid} in {printable(box.name)}, {human_size(record.size)}, flags: {flags},"
        f" received {rfc3339(record.internaldate)}"
    )
    for a in attachments:
        name = printable(str(a["filename"])) or "(unnamed)"
        size = a["size"]
        assert isinstance(size, int)
        click.echo(f"-- attachment: {name} ({a['content_type']}, {human_size(size)})")
    click.echo("")
    if text is None and html is not None:
        click.echo("(no text/plain part: the HTML part as text)")
    for line in _readable_text(text, html).splitlines():
        click.echo(printable(line))


def _unique_names(message: Message) -> list[str]:
    seen: dict[str, None] = {}
    for name in message:
        seen.setdefault(name, None)
    return list(seen)


# --- expunge -----------------------------------------------------------------------


@mailbox.command("expunge")
@click.argument("address")
@click.argument("folder")
@click.argument("query", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
@one_line_errors
def mailbox_expunge(
    ctx: click.Context, address: str, folder: str, query: tuple[str, ...], dry_run: bool
) -> None:
    """Remove the messages of FOLDER of ADDRESS that an IMAP SEARCH QUERY finds.

    Through the store's own EXPUNGE: IMAP sessions with the folder selected
    are told (EXPUNGE or VANISHED) at their next command and the index
    stays right. There is no undo; --dry-run lists the messages first. The
    query is read as for `mailbox search` (ALL removes every message).

    \b
    Example:
      mailstead mailbox expunge alice@example.org Trash 'BEFORE 1-Jan-2025' --dry-run
      mailstead mailbox expunge alice@example.org INBOX 'FROM spammer@example.net'
    """
    program = _parse(query)
    with contextlib.ExitStack() as stack:
        # Webhooks hear of it as of an IMAP EXPUNGE (message.expunged).
        events = None if dry_run else stack.enter_context(_outbox(ctx))
        _expunge(ctx, address, folder, program, dry_run, events)


def _outbox(ctx: click.Context) -> Outbox:
    from mailstead import app  # serve's wiring, as `webhook` opens it

    config = load(ctx)
    return app.open_outbox(config)


def _expunge(
    ctx: click.Context,
    address: str,
    folder: str,
    program: SearchQuery,
    dry_run: bool,
    events: EventSink | None,
) -> None:
    _canonical, account = _open(ctx, address, events)
    box = _folder(account, folder)
    uids = search(box, program)
    name = printable(box.name)
    if dry_run:
        for s in summaries(box, uids):
            click.echo(
                f"would expunge UID {s.uid}: {rfc3339(s.internaldate)}"
                f"  {_clip(printable(s.sender), _FROM_WIDTH)}  {printable(s.subject)}"
            )
        click.echo(f"-- {_count(len(uids), 'message')} of {name} would be expunged (dry run)")
        return
    gone = expunge(box, uids)
    click.echo(f"expunged {_count(len(gone), 'message')} from {name}")


# --- reindex -----------------------------------------------------------------------


@mailbox.command("reindex")
@click.argument("address", required=False)
@click.option("--all", "every", is_flag=True, help="Every user of the directory.")
@click.pass_context
@one_line_errors
def mailbox_reindex(ctx: click.Context, address: str | None, every: bool) -> None:
    """Rebuild the full-text search index of ADDRESS (or of --all users).

    The index (mailstead-search.sqlite3 beside the mailbox index) is
    rebuildable: SEARCH reads what it has not indexed, and the server
    catches up in the background. Rebuild after restoring a backup without
    it, or to reclaim its space. Mailboxes in mbox format have no index.
    With backend = "postgresql" there is nothing to rebuild: it says so and
    exits 0.

    \b
    Example:
      mailstead mailbox reindex alice@example.org
      mailstead mailbox reindex --all
    """
    if every == (address is not None):
        raise Failure("give an ADDRESS or --all, not both")
    config = load(ctx)
    if config.storage.backend == "postgresql":
        if address is not None:
            _address(config, address)
        # No file holds the mail or anything derived from it: the database
        # keeps both, and usage is summed from the message rows.
        click.echo(
            'nothing to rebuild from files: with backend = "postgresql" the mail and its'
            " search data live in the cluster database"
        )
        return
    if address is not None:
        addresses = [address]
    else:
        with open_directory(config) as d:
            addresses = d.users()
    for each in addresses:
        canonical, account = _open(ctx, each)
        if account is None:
            click.echo(f"{canonical}: nothing stored yet")
            continue
        if not isinstance(account, Account):
            raise Failure(f"{canonical}: mbox mailboxes have no search index")
        folders = []
        for name in account.names():
            box = account.mailbox(name)
            box.refresh()  # mail dropped into new/ gets its UID first
            folders.append((box.id, box.path))
        try:
            count = account.text_index.rebuild(folders)
        except SearchIndexUnavailable as exc:
            raise Failure(str(exc)) from None
        folders_text = _count(len(folders), "folder")
        click.echo(f"{canonical}: indexed {_count(count, 'message')} in {folders_text}")
