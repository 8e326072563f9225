"""What a host's EHLO reply offers, and the commands the client writes to fit it.

The SMTP client keeps one :class:`HostExtensions` per EHLO (RFC 5321
§4.1.1.1) and asks it which ESMTP parameters MAIL and RCPT may carry and
whether a message can be sent to that host at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.events import MailParams, Recipient
from mailstead.proto.smtp.replies import Reply


def encode_xtext(value: str) -> str:
    """RFC 3461 §4 xtext: "+" hex for "+", "=" and octets outside "!".."~" (UTF-8)."""
    out = []
    for b in value.encode("utf-8"):
        out.append(chr(b) if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D) else f"+{b:02X}")
    return "".join(out)


def needs_smtputf8(sender: str, recipients: Sequence[Recipient], params: MailParams) -> bool:
    """RFC 6531 §3.4: asked for, or a non-ASCII address in the envelope."""
    return (
        params.smtputf8 or not sender.isascii() or any(not r.address.isascii() for r in recipients)
    )


@dataclass(frozen=True, slots=True)
class HostExtensions:
    """The EHLO keywords a host advertised (upper-case) with their parameters;
    none after HELO or before any greeting."""

    keywords: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_ehlo(cls, reply: Reply) -> HostExtensions:
        """The keywords of a 250 to EHLO: every line after the first."""
        keywords: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, value = line.strip().partition(" ")
            if keyword.isascii() and keyword:
                keywords[keyword.upper()] = value.strip()
        return cls(keywords)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.keywords

    @property
    def max_size(self) -> int | None:
        """RFC 1870 §4: SIZE with a positive number is a limit; 0 or none is not."""
        value = self.keywords.get("SIZE", "")
        if value.isascii() and value.isdigit() and int(value) > 0:
            return int(value)
        return None

    def refusal(
        self, sender: str, recipients: Sequence[Recipient], content: bytes, params: MailParams
    ) -> Reply | None:
        """Why this host cannot take the message as it is, or None."""
        max_size = self.max_size
        if max_size is not None and len(content) > max_size:
            return R.TOO_BIG_FOR_HOST  # RFC 1870 §6.1: do not send what will be refused
        if needs_smtputf8(sender, recipients, params) and "SMTPUTF8" not in self:
            return R.NEED_SMTPUTF8  # RFC 6531 §3.2, §3.4
        if not content.isascii() and "8BITMIME" not in self:
            # RFC 6152 §3: convert or bounce. MIME downgrading would break a
            # DKIM signature made before this point, so we bounce.
            return R.NEED_8BITMIME
        return None

    def mail_command(
        self, sender: str, recipients: Sequence[Recipient], content: bytes, params: MailParams
    ) -> str:
        """MAIL FROM with the parameters this host understands."""
        words = [f"MAIL FROM:<{sender}>"]
        if "SIZE" in self:
            words.append(f"SIZE={len(content)}")  # RFC 1870 §3
        if "8BITMIME" in self and (
            not content.isascii() or (params.body or "").upper() == "8BITMIME"
        ):
            words.append("BODY=8BITMIME")  # RFC 6152 §2
        if needs_smtputf8(sender, recipients, params):
            words.append("SMTPUTF8")  # RFC 6531 §3.4
        if "DSN" in self:  # RFC 3461 §4.3, §4.4: only to a host that offers DSN
            if params.ret:
                words.append(f"RET={params.ret.upper()}")
            if params.envid:
                words.append(f"ENVID={encode_xtext(params.envid)}")
        return " ".join(words)

    def rcpt_command(self, rcpt: Recipient) -> str:
        """RCPT TO with the parameters this host understands."""
        words = [f"RCPT TO:<{rcpt.address}>"]
        if "DSN" in self:  # RFC 3461 §4.1, §4.2
            if rcpt.params.notify:
                words.append("NOTIFY=" + ",".join(rcpt.params.notify).upper())
            if rcpt.params.orcpt:
                addr_type, _, addr = rcpt.params.orcpt.partition(";")
                words.append(f"ORCPT={addr_type};{encode_xtext(addr)}")
        return " ".join(words)
