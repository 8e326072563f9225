"""Every size, count and time limit Mailstead enforces, in one place.

Peers are hostile until proven otherwise: each limit here bounds memory,
CPU or time that one connection can take. The defaults follow Postfix and
Dovecot where they have a matching knob; tests pass smaller values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """Deadlines that trickled bytes cannot extend, shared by SMTP, IMAP and POP3.

    An idle timeout restarts with every byte, so a client that sends one
    byte every few seconds and never ends a line would hold its connection
    for ever; these deadlines run from a fixed point instead. Under stress
    (a listener more than ``stress_fraction`` full) the deadlines of
    sessions that have not logged in shrink to ``stress_timeout``, as
    Postfix's ``smtpd_timeout`` drops from 300 s to 10 s in its stress
    mode, and the oldest such session is closed to make room for a new
    client. Logged-in sessions are never touched. Set from ``[limits]``.
    """

    # A command line must be complete this long after its first octet
    # (Postfix smtpd_per_record_deadline). Message data and literals are
    # bounded by the transaction deadline and their size instead.
    line_timeout: float = 60.0
    # From connect to a successful login, on IMAP, POP3 and submission
    # (Dovecot closes login processes' clients after a similar time).
    login_timeout: float = 60.0
    # SMTP: from MAIL FROM to the reply after the message data (a 50 MB
    # message at 64 KB/s takes 13 minutes).
    transaction_timeout: float = 1800.0
    # Share of a listener's connections_total that starts the stress mode.
    stress_fraction: float = 0.8
    # Idle, line and login deadlines of sessions not logged in, under stress.
    stress_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class ProxyProtocolLimits:
    """What a connection from a listed load balancer may take before its PROXY header
    is read ([listen] proxy_protocol; the format is proto/proxy.py). The
    connection holds no slot of the gate yet (it is counted by the client's
    address, which the header gives), so these bounds are all that holds it."""

    # Seconds from connect until the whole header has arrived. HAProxy sends
    # it at once with the connection; the specification (proxy-protocol.txt
    # §2) suggests "at least 3 seconds to cover a TCP retransmit".
    header_timeout: float = 5.0
    # Octets after the 16-octet fixed part of a v2 header: the addresses
    # (at most 216, for UNIX sockets) and the TLVs HAProxy may add (ALPN,
    # SNI, a unique ID of up to 128, SSL details). The length field could
    # announce 65535.
    max_v2_payload: int = 2048


@dataclass(frozen=True, slots=True)
class SMTPLimits:
    """Limits of one SMTP server session (MTA and MSA roles alike)."""

    # RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with CRLF.
    # Extension parameters may make it longer (§4.5.3.1.2), so allow 4 KiB
    # before answering 500 and discarding up to the next CRLF.
    command_line: int = 4096
    # Largest message accepted, advertised by SIZE (RFC 1870). Postfix: 10 MB.
    message_size: int = 50 * 1024 * 1024
    # RFC 5321 §4.5.3.1.8 requires room for at least 100 recipients.
    recipients_per_message: int = 1000
    # Messages per connection before 421; bounds a single session's work.
    messages_per_session: int = 10_000
    # Commands of any kind in one session before 421 (Postfix has no match;
    # a session never needs more than a few per message).
    commands_per_session: int = 100_000
    # Syntax or sequence errors before the server says 421 and closes
    # (Postfix smtpd_hard_error_limit = 20).
    errors_per_session: int = 20
    # Failed AUTH attempts before 421 (also slowed down by auth_failure_delay).
    auth_failures_per_session: int = 3
    # Seconds a failed AUTH waits before its reply, to slow guessing.
    auth_failure_delay: float = 1.0
    # Longest SASL exchange line (base64 of credentials), RFC 4954 §4.
    sasl_line: int = 12288
    # RFC 5321 §4.5.3.2.7: the server waits 5 minutes for the next command.
    idle_timeout: float = 300.0
    # RFC 5321 §4.5.3.2.5/6: at most 3 minutes between data blocks; the
    # whole transfer may take as long as it keeps moving.
    data_timeout: float = 180.0
    # Seconds for the TLS handshake after STARTTLS or on an implicit-TLS port.
    tls_handshake_timeout: float = 30.0
    # Received headers counted before a message is refused as a loop
    # (RFC 5321 §6.3; Postfix hopcount_limit = 50).
    max_received_headers: int = 50


@dataclass(frozen=True, slots=True)
class SMTPClientLimits:
    """Limits of one outbound SMTP client session (the MTA talking to a remote host).

    The remote host is as untrusted as any inbound peer: its replies are
    bounded, and every wait has a timeout (RFC 5321 §4.5.3.2 gives the
    minimums a client SHOULD allow; these are those minimums).
    """

    # RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with CRLF;
    # real servers send longer texts, so allow 4 KiB before giving up.
    reply_line: int = 4096
    # Lines in one (multi-line) reply; an EHLO reply needs a dozen or two.
    reply_lines: int = 100
    # BDAT chunk size when the peer offers CHUNKING (RFC 3030).
    bdat_chunk: int = 1024 * 1024
    # RFC 5321 §4.5.3.2.1: initial 220 message, 5 minutes.
    greeting_timeout: float = 300.0
    # EHLO, HELO, STARTTLS, RSET and QUIT have no timeout of their own in
    # the RFC; they get the MAIL timeout.
    command_timeout: float = 300.0
    # RFC 5321 §4.5.3.2.2: MAIL command, 5 minutes.
    mail_timeout: float = 300.0
    # RFC 5321 §4.5.3.2.3: RCPT command, 5 minutes.
    rcpt_timeout: float = 300.0
    # RFC 5321 §4.5.3.2.4: DATA initiation (waiting for 354), 2 minutes.
    data_init_timeout: float = 120.0
    # RFC 5321 §4.5.3.2.5: each write of message data (and a non-LAST BDAT
    # reply), 3 minutes.
    data_block_timeout: float = 180.0
    # RFC 5321 §4.5.3.2.6: the reply to <CRLF>.<CRLF> (or BDAT LAST), 10 minutes.
    data_termination_timeout: float = 600.0
    # The TLS handshake after 220 to STARTTLS.
    tls_handshake_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class POP3Limits:
    """Limits of one POP3 server session (RFC 1939, RFC 2449, RFC 5034)."""

    # RFC 2449 §4: a command line is at most 255 octets including CRLF.
    command_line: int = 255
    # AUTH lines and SASL responses may be longer (RFC 5034 §4 lets clients
    # that keep to 255 octets send no initial response instead; be lenient).
    sasl_line: int = 1024
    # -ERR answers to commands before the server says -ERR and closes
    # (as SMTPLimits.errors_per_session).
    errors_per_session: int = 20
    # Failed logins (USER/PASS or AUTH) before the server closes.
    auth_failures_per_session: int = 3
    # Seconds a failed login waits before its -ERR, to slow guessing.
    auth_failure_delay: float = 1.0
    # RFC 1939 §3: the inactivity autologout timer is at least 10 minutes.
    idle_timeout: float = 600.0
    # Seconds for the TLS handshake after STLS or on the implicit-TLS port.
    tls_handshake_timeout: float = 30.0
    # Simultaneous connections from one IP address, and to one listener in all.
    connections_per_ip: int = 50
    connections_total: int = 1000


@dataclass(frozen=True, slots=True)
class IMAPLimits:
    """Limits of one IMAP session (RFC 9051; Dovecot's defaults where it has one)."""

    # Octets of one command's lines, literals excluded (Dovecot
    # imap_max_line_length = 64k).
    command_line: int = 64 * 1024
    # Literal octets accepted before login: LOGIN and AUTHENTICATE need
    # little, and nothing larger may be buffered for an anonymous peer.
    literal_before_auth: int = 8 * 1024
    # Largest APPEND, advertised as APPENDLIMIT (RFC 7889).
    append_limit: int = 50 * 1024 * 1024
    # Nesting of parenthesized lists (search programs, BODYSTRUCTURE-like input).
    nesting_depth: int = 16
    # Tokens in one command (a long UID set or search program is still bounded).
    tokens_per_command: int = 100_000
    # Bad commands in one session before * BYE.
    errors_per_session: int = 20
    # Failed logins in one session before * BYE (each slowed by auth_failure_delay).
    auth_failures_per_session: int = 3
    auth_failure_delay: float = 1.0
    # One SASL response line (base64 of the credentials).
    sasl_line: int = 12 * 1024
    # RFC 9051 §5.4: the inactivity autologout timer is at least 30 minutes;
    # an IDLE client re-issues IDLE before 30 minutes (RFC 2177).
    idle_timeout: float = 30 * 60.0
    tls_handshake_timeout: float = 30.0
    # How often a session in IDLE looks for changes made elsewhere.
    idle_poll_interval: float = 0.5
    # Mailboxes one account may have (CREATE refuses beyond with [LIMIT]).
    mailboxes_per_account: int = 1000


@dataclass(frozen=True, slots=True)
class WebhookLimits:
    """What the webhook dispatcher may spend, so a slow or dead endpoint slows
    nothing else: not mail (the dispatcher only reads the outbox), not other
    endpoints (each has its own share of the connections)."""

    # POSTs in flight to one endpoint; the rest of its deliveries wait.
    per_endpoint: int = 10
    # POSTs in flight in one dispatcher, over all endpoints.
    total: int = 64
    # Connect and per-read timeouts of one POST (the read timeout restarts
    # with every byte; attempt_timeout bounds the whole exchange).
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    attempt_timeout: float = 60.0
    # How long a claimed delivery stays reserved for the worker that claimed
    # it; a worker that died mid-POST frees it after this.
    lease: float = 120.0
    # Longest sleep between outbox polls; events emitted by this process
    # wake the dispatcher at once, those of other processes within this.
    poll_interval: float = 1.0
    # message.received: text and HTML bodies in the payload are cut here
    # (UTF-8 bytes, each), and flagged as truncated.
    max_body_bytes: int = 256 * 1024
    # ``serve`` runs the dispatcher in its own process at this nice(2)
    # increment: while SMTP keeps every CPU busy, POSTs wait (in the outbox).
    dispatcher_niceness: int = 10


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """What rendering one e-mail template may take, so a runaway or hostile
    template (an endless loop, a huge file, a string multiplied into
    gigabytes) ends with a clear error instead of a hung or killed process."""

    # One template file, an included or extended one, or a --data document.
    source_bytes: int = 1024 * 1024
    # One --data value or one JSON-lines record.
    data_bytes: int = 10 * 1024 * 1024
    # Wall time of one Jinja2 render (the template's own code).
    render_seconds: float = 5.0
    # The rendered HTML, before and after CSS inlining (Gmail clips at ~102 KB).
    output_bytes: int = 5 * 1024 * 1024
    # The local images one message carries as cid: parts, all together.
    image_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AuthCheckLimits:
    """How much the checks of received mail (SPF, DKIM, DMARC) keep of what
    they parsed, so the next message with the same DNS record skips the parse.

    Each cache is keyed by the record's text as the DNS gave it: a changed
    record is a new key, parsed anew as soon as the DNS answer cache
    (``[auth_checks] cache_size``, for the records' TTL) lets the new text
    through. Least recently used entries go first.
    """

    # DKIM public keys (the TXT record text -> dkimpy's parsed key); one
    # record is at most 8 KB of text (mailauth/lookups.py), so 2 MB at most.
    dkim_keys: int = 256
    # SPF records (text -> parsed terms), the sender's and its includes,
    # up to spf_record_chars long: a parsed record of 4096 characters of
    # ip4: terms takes about 170 KB, one of 1024 about 42 KB, so 11 MB at
    # most; longer ones (rare: RFC 7208 §3.4 asks for 512 octets) are
    # parsed at each use.
    spf_records: int = 256
    spf_record_chars: int = 1024
    # DMARC records (text -> policy; a few hundred bytes each, 8 KB at most).
    dmarc_records: int = 512
    # From field values (at most 2000 characters) -> the author domain.
    from_values: int = 1024


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """How long a node holds the queued messages it delivers, when nodes share
    one queue (``[storage] backend = "postgresql"``; mta/queue.py)."""

    # Seconds a claim on a queued message lasts. The outbound engine renews
    # its claims at every look at the queue (at least every 2 s) while it
    # delivers; a node that died loses them after this, and another node
    # retries those messages (issue 25: at most 60 s).
    lease: float = 60.0


@dataclass(frozen=True, slots=True)
class SharedPenaltyLimits:
    """How long a login waits on the failed-login counts the cluster's nodes
    share (``[storage] backend = "postgresql"``; net/auth_penalty_db.py).

    The counts are asked for on the event loop, before every password check:
    a slow or lost database must cost a login at most ``round_trip``, and
    then the node's own counts decide alone for ``retry_after``.
    """

    # Seconds the event loop waits for one answer (a pooled connection, the
    # statement and its row locks, all together).
    round_trip: float = 0.25
    # Seconds the node does not ask after an answer did not come in time.
    retry_after: float = 10.0
    # Seconds between deletions of rows older than auth_block_time, and the
    # most rows one deletion takes (a longer one would hold up the logins
    # queued behind it on the node's database thread).
    sweep_every: float = 60.0
    sweep_rows: int = 10_000
    # Updates nobody waits for (a success clearing its address, a sweep)
    # queued for the process's database thread: past this they are dropped,
    # so a thread stuck on a lost connection gathers no queue.
    backlog: int = 256
