"""Local submission (``mailstead send``): a message handed in on the command line.

It goes through exactly the rules of the MSA listener, without the network:
a :class:`~mailstead.mta.receiver.Receiver` in :attr:`Role.MSA` sees a
:class:`Peer` authenticated as the local user who owns ``--from``, answers
MAIL FROM (:meth:`Receiver.sender_reply`) and each RCPT TO
(:meth:`Receiver.route`), and stores the message with
:meth:`Receiver.commit`: local mailboxes get it at once, remote recipients
go to the durable queue, where the running server's outbound loop finds it
within its poll interval. Nothing is stored unless every recipient is
accepted, as an SMTP client that aborts on the first refused RCPT would do.

The message itself is built here (:func:`build_message`): From, To,
Subject, Date, a Message-ID in the sender's domain, and a text part, an
HTML part or both as ``multipart/alternative``. Bodies use 7-bit transfer
encodings, so a remote server needs no 8BITMIME; only non-ASCII addresses
need SMTPUTF8 (RFC 6531).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, localtime, make_msgid
from html.parser import HTMLParser
from pathlib import Path

from mailstead.addresses import AddressError, normalize_domain, split_address
from mailstead.directory import Directory, Resolution
from mailstead.limits import SMTPLimits
from mailstead.mta.receiver import Peer, Receiver
from mailstead.proto.smtp.address import PathError, validate_mailbox
from mailstead.proto.smtp.events import MailParams, Message, RcptParams, Recipient
from mailstead.proto.smtp.replies import Reply

__all__ = [
    "Body",
    "SubmitError",
    "Submitted",
    "build_message",
    "check_addresses",
    "html_to_text",
    "load_body",
    "owning_user",
    "render_template",
    "submit",
]

# The trace headers of a local submission: Received "from localhost ([127.0.0.1])".
_LOCAL_PEER_IP = "127.0.0.1"
_LOCAL_PEER_HELO = "localhost"
# Where the receiver logs a failed commit; the cause is put into the one-line error.
_RECEIVER_LOGGER = "mailstead.smtp"


class SubmitError(Exception):
    """The message was not submitted; the text is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Body:
    """The text and/or HTML content of a message to build (at least one of them)."""

    text: str | None = None
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """The outcome of a successful :func:`submit`."""

    #: The 250 reply of the commit ("Ok: queued as <queue id>").
    reply: Reply
    #: Mailboxes that got their copy at once.
    local: tuple[str, ...]
    #: Remote addresses handed to the outbound queue.
    remote: tuple[str, ...]
    #: The outbound queue's id of the message (for ``mailstead queue show``),
    #: None if nothing went to the queue.
    queue_id: str | None


# --------------------------------------------------------------------------- bodies


def _read_text(path: Path) -> str:
    data = path.read_bytes()  # OSError: the caller reports "<file>: <reason>"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmitError(f"{path}: not UTF-8 text") from None


def render_template(path: Path, data_json: str | None) -> str:
    """Render the Jinja2 template at ``path`` with the JSON object ``data_json``.

    Autoescaping is on for ``.html``/``.htm``/``.xml`` templates, so data
    never becomes markup; an undefined variable is an error rather than an
    empty string (a mail to many people should not say "Dear ,").
    ``{% include %}`` and ``{% extends %}`` find files beside the template.
    """
    import jinja2  # only `send --template` needs it
    from jinja2.sandbox import SandboxedEnvironment

    try:
        data = json.loads(data_json) if data_json is not None else {}
    except json.JSONDecodeError as exc:
        raise SubmitError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SubmitError("--data must be a JSON object")
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(path.parent),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    try:
        return env.get_template(path.name).render(data)
    except jinja2.TemplateNotFound as exc:
        raise SubmitError(f"{path}: template not found: {exc.name}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise SubmitError(f"{exc.filename or path}:{exc.lineno}: {exc.message}") from None
    except UnicodeDecodeError:
        raise SubmitError(f"{path}: not UTF-8 text") from None
    except jinja2.TemplateError as exc:
        raise SubmitError(f"{path}: {exc}") from None


def load_body(
    text: str | None,
    html_file: Path | None,
    template: Path | None,
    data_json: str | None,
) -> Body:
    """The body the options of ``send`` describe; the text part is derived from HTML if absent."""
    if html_file is not None and template is not None:
        raise SubmitError("give --html or --template, not both")
    if data_json is not None and template is None:
        raise SubmitError("--data needs --template")
    html_text: str | None = None
    if html_file is not None:
        html_text = _read_text(html_file)
    elif template is not None:
        html_text = render_template(template, data_json)
    if text is None and html_text is None:
        raise SubmitError("give a body: --text, --html or --template")
    if text is None and html_text is not None:
        text = html_to_text(html_text)
    return Body(text=text, html=html_text)


class _TextExtractor(HTMLParser):
    """A simple tag-strip: text content, line breaks at blocks, link targets kept."""

    _SKIP = frozenset({"head", "script", "style", "template", "title"})
    _BLOCK = frozenset(
        {
            "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd",
            "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
            "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in self._BLOCK:
            self.out.append("\n\n")
            if tag == "li":
                self.out.append("- ")
        elif tag == "a":
            self._href.append(dict(attrs).get("href"))
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":  # <a/> has no end tag to pop it
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.out.append("\n\n")
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and href.startswith(("http:", "https:", "mailto:")):
                shown = href.removeprefix("mailto:")
                if not self.out or self.out[-1].strip() != shown:
                    self.out.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A plain-text rendering of ``markup`` for the text/plain alternative."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text + "\n" if text else ""


# --------------------------------------------------------------------------- message


def build_message(
    sender: str,
    recipients: Sequence[str],
    subject: str | None,
    body: Body,
    *,
    now: float | None = None,
) -> bytes:
    """The message as it goes on the wire: CRLF line endings, 7-bit bodies.

    Headers use RFC 2047 encoded words for non-ASCII text, unless an address
    is non-ASCII: then the message needs SMTPUTF8 anyway and headers are
    UTF-8 (RFC 6532).
    """
    if body.text is None and body.html is None:
        raise SubmitError("give a body: --text, --html or --template")
    check_addresses(sender, recipients)
    utf8 = not all(a.isascii() for a in (sender, *recipients))
    base = email_policy.SMTPUTF8 if utf8 else email_policy.SMTP
    # 7bit: non-ASCII bodies become quoted-printable or base64, so any
    # server takes them, 8BITMIME or not (RFC 6152).
    policy = base.clone(cte_type="7bit")
    _, domain = split_address(sender)
    msg = EmailMessage(policy=policy)
    try:
        msg["From"] = sender
        msg["To"] = ", ".join(recipients)
        if subject is not None:
            msg["Subject"] = subject
        when = localtime() if now is None else localtime(datetime.fromtimestamp(now, UTC))
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = make_msgid(domain=_msgid_domain(domain))
    except (ValueError, TypeError) as exc:
        # CR/LF in --subject: a header must not be able to add another.
        raise SubmitError(f"bad header: {exc}") from None
    if body.text is not None:
        msg.set_content(_crlf_free(body.text), subtype="plain")
        if body.html is not None:
            msg.add_alternative(_crlf_free(body.html), subtype="html")
            for part in msg.iter_parts():
                del part["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
    elif body.html is not None:
        msg.set_content(_crlf_free(body.html), subtype="html")
    content = msg.as_bytes()
    return content if content.endswith(b"\r\n") else content + b"\r\n"


def _msgid_domain(domain: str) -> str:
    try:
        return normalize_domain(domain)
    except AddressError:
        raise SubmitError(f"bad sender domain {domain!r}") from None


def _crlf_free(text: str) -> str:
    # The email package writes CRLF itself; a CR of our own would double it.
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- submission


def _check_syntax(address: str, what: str) -> None:
    try:
        validate_mailbox(address, utf8=True, enhanced="5.1.3")
    except PathError as exc:
        shown = address.encode("unicode_escape").decode("ascii")
        raise SubmitError(f"{shown}: bad {what} address: {exc.text}") from None


def check_addresses(sender: str, recipients: Sequence[str]) -> None:
    """RFC 5321 §4.1.2 syntax (RFC 6531 UTF-8 allowed) of the envelope, or SubmitError."""
    _check_syntax(sender, "sender")
    for rcpt in recipients:
        _check_syntax(rcpt, "recipient")


def _reply_text(reply: Reply) -> str:
    return " ".join(str(x) for x in (reply.code, reply.enhanced, *reply.lines) if x)


def owning_user(directory: Directory, sender: str) -> str | None:
    """The local user who may send as ``sender``: its own address, or an alias of it."""
    resolution = directory.resolve(sender)
    if resolution is None:
        return None
    for user in resolution.mailboxes:
        if directory.may_send_as(user, sender):
            return user
    return None


def submit(
    receiver: Receiver,
    sender: str,
    recipients: Sequence[str],
    content: bytes,
    *,
    limits: SMTPLimits | None = None,
    on_routed: Callable[[str], None] | None = None,
) -> Submitted:
    """Hand ``content`` (CRLF) from ``sender`` to ``recipients`` through the MSA rules.

    ``on_routed`` is called after each recipient was accepted (progress).
    Raises :class:`SubmitError` if the sender is not a local user's, any
    recipient is refused (then nothing is stored), or the commit fails.
    """
    limits = limits or receiver.limits
    check_addresses(sender, recipients)
    unique = list(dict.fromkeys(recipients))
    if not unique:
        raise SubmitError("give at least one --to")
    if len(unique) > limits.recipients_per_message:
        raise SubmitError(f"too many recipients (at most {limits.recipients_per_message})")
    if len(content) > limits.message_size:
        raise SubmitError(f"message too large (at most {limits.message_size} bytes)")
    user = owning_user(receiver.directory, sender)
    if user is None:
        raise SubmitError(f"{sender}: not a local user")
    peer = Peer(ip=_LOCAL_PEER_IP, helo=_LOCAL_PEER_HELO, tls=False, user=user)
    utf8 = not all(a.isascii() for a in (sender, *unique))
    params = MailParams(size=len(content), smtputf8=utf8)
    reply = receiver.sender_reply(peer, sender, params)  # RFC 6409 §6.1
    if reply.code != 250:
        raise SubmitError(f"{sender}: {_reply_text(reply)}")
    routes: dict[str, Resolution] = {}
    for rcpt in unique:
        reply, resolution = receiver.route(peer, rcpt)
        if reply.code != 250 or resolution is None:
            raise SubmitError(f"{rcpt}: {_reply_text(reply)}; nothing sent")
        routes[rcpt] = resolution
        if on_routed is not None:
            on_routed(rcpt)
    message = Message(
        sender=sender,
        mail_params=params,
        recipients=tuple(Recipient(r, RcptParams()) for r in unique),
        content=content,
    )
    with _capture_errors(_RECEIVER_LOGGER) as errors:
        reply = receiver.commit(peer, message, routes)
    if reply.code != 250:
        cause = f" ({errors[-1]})" if errors else ""
        raise SubmitError(f"not accepted: {_reply_text(reply)}{cause}")
    local = tuple(dict.fromkeys(m for r in routes.values() for m in r.mailboxes))
    remote = tuple(dict.fromkeys(a for r in routes.values() for a in r.remote))
    match = re.search(r"queued as ([0-9A-F]+)", " ".join(reply.lines))
    queue_id = match[1] if remote and match else None
    return Submitted(reply=reply, local=local, remote=remote, queue_id=queue_id)


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.messages.append(str(exc) if exc is not None else record.getMessage())


@contextlib.contextmanager
def _capture_errors(name: str) -> Iterator[list[str]]:
    """Collect the error messages ``name`` logs, without their tracebacks.

    With a handler of its own the logger no longer falls back to Python's
    last-resort handler, which would print a traceback on stderr.
    """
    logger = logging.getLogger(name)
    handler = _ErrorCollector()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
