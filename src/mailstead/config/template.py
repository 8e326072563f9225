"""The commented ``mailstead.toml`` that ``mailstead init`` writes (docs/config.md).

Every key with its default, so that an operator sees what can be set; the
``{hostname}`` and ``{domain}`` fields are filled with JSON strings, which are
valid TOML basic strings.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailstead.config.reader import Reader, domain_name

__all__ = ["SYSTEM_CONFIG", "SYSTEM_DATA_DIR", "TEMPLATE", "default_config_text"]

# A checkout: unprivileged ports on loopback, next to the config file.
_LOCAL_LISTEN = """\
[listen]                            # "host:port" strings; an empty list disables
smtp        = ["127.0.0.1:2525"]    # MTA: from other servers, local recipients only
submission  = ["127.0.0.1:2587"]    # MSA: STARTTLS, then AUTH required
submissions = ["127.0.0.1:2465"]    # MSA over implicit TLS
imap  = ["127.0.0.1:2143"]
imaps = ["127.0.0.1:2993"]
pop3  = ["127.0.0.1:2110"]
pop3s = ["127.0.0.1:2995"]
# metrics = ["127.0.0.1:9925"]      # Prometheus GET /metrics (docs/metrics.md); off by default
# proxy_protocol = ["10.0.0.0/8"]   # balancers sending a PROXY header (docs/config.md); off
"""

# A checkout's server listens on loopback only, and `make run` must work for
# whoever runs it, root included (a container, a CI machine); a service does not.
_LOCAL_RUN_AS_ROOT = (
    "allow_root = true                   # a trial on loopback; `init --system` writes false"
)
_SYSTEM_RUN_AS_ROOT = (
    "allow_root = false                  # true: keep running as root (not recommended)"
)

# `init --system`: the standard ports on every IPv4 address (RFC 5321 §4.5.4.2
# port 25, RFC 6409 §3.1 587, RFC 8314 §7.3 465/993/995).
_SYSTEM_LISTEN = """\
[listen]                            # "host:port" strings; "[::]:25" adds IPv6
smtp        = ["0.0.0.0:25"]        # MTA: from other servers, local recipients only
submission  = ["0.0.0.0:587"]       # MSA: STARTTLS, then AUTH required
submissions = ["0.0.0.0:465"]       # MSA over implicit TLS
imap  = ["0.0.0.0:143"]
imaps = ["0.0.0.0:993"]
pop3  = ["0.0.0.0:110"]
pop3s = ["0.0.0.0:995"]
# metrics = ["127.0.0.1:9925"]      # Prometheus GET /metrics (docs/metrics.md); off by default
# proxy_protocol = ["10.0.0.0/8"]   # balancers sending a PROXY header (docs/config.md); off
"""

#: Where ``init --system`` keeps the data (the FHS place for a service's state).
SYSTEM_DATA_DIR = "/var/lib/mailstead"
#: Where ``init --system`` writes the config, and where commands look when none is named.
SYSTEM_CONFIG = Path("/etc/mailstead/mailstead.toml")

TEMPLATE = """\
# Mailstead configuration. Every key is optional except `domains`.
# Reference: docs/config.md

# Fully qualified name of this host: SMTP banner, EHLO, Received headers.
hostname = {hostname}
# All state (databases, mail, TLS files); relative to this file.
data_dir = {data_dir}
# Domains this server receives mail for.
domains  = [{domain}]
# Server processes sharing the listening sockets; 0 = one per CPU.
workers  = 0

{listen}
[tls]                               # relative to data_dir; self-signed by `mailstead init`
cert = "tls/cert.pem"
key  = "tls/key.pem"

[storage]
format = "maildir"                  # or "mbox"

[delivery]                          # outbound MTA
dns_servers  = []                   # [] = system resolver; e.g. ["127.0.0.1:5353"]
smtp_port    = 25                   # port of remote MX hosts
source_ip    = ""                   # local address for outbound connections
helo_name    = ""                   # default: hostname
retry_schedule = ["1m", "5m", "15m", "30m", "1h", "2h", "4h", "8h"]
max_lifetime = "5d"
delay_warning = "4h"                # tell the sender once if still undelivered; "0" = never
require_tls  = false                # true: never hand mail over without STARTTLS
mta_sts      = true                 # honour receiving domains' MTA-STS policies
# [delivery.source_ip_by_domain]    # per sender domain, instead of source_ip
# "example.test" = "192.0.2.26"     # its mail leaves from this address

[http_client]                       # HTTP requests the server makes (webhooks)
allow_networks = []                 # private/loopback networks they may reach,
                                    # e.g. ["127.0.0.0/8"]

[pop3]
delete_retrieved = false            # true: delete mail once a client retrieved it

[auth]
password_cache_ttl = "1h"           # a login with the same password skips the
                                    # scrypt check this long; "0" = never skip

[auth_checks]                       # SPF, DKIM, DMARC of mail on the smtp listener
enabled      = true                 # docs/mailauth.md
dmarc_reject = "reject"             # p=reject failures: "reject", "junk" or "accept"
arc_trusted_sealers = []            # ARC sealers whose dmarc=pass overrides a DMARC fail

[abuse]                             # docs/abuse.md
ip_messages   = "60/1m"             # per client address on smtp ("0" = no limit)
ip_recipients = "300/1m"
user_messages = "200/1h"            # per logged-in user on submission
dnsbl    = []                       # DNS block lists, e.g. ["zen.example"] (use your own resolver)
greylist = false

[limits]                            # per listener; docs/security.md
connections_per_ip      = 50
connections_per_network = 200       # IPv4 /24, IPv6 /64
connections_total       = 1000
line_timeout       = "60s"          # to finish a command line once begun
login_timeout      = "60s"          # from connect to login (IMAP, POP3, submission)
transaction_timeout = "30m"         # SMTP: MAIL FROM to the end of the data
stress_threshold   = 80             # percent of connections_total: stress mode,
stress_timeout     = "10s"          # where sessions not logged in get this
auth_penalty_max   = "15s"          # wait before logins from a failing address
auth_block_after   = 20             # failures before its logins are refused
auth_block_time    = "15m"          # how long failures are remembered
watchdog_timeout   = "10s"          # a worker whose event loop is blocked this
                                    # long is killed and replaced
shutdown_timeout   = "30s"          # after SIGTERM, workers still running then
                                    # are killed
queue_lease        = "60s"          # [storage] backend = "postgresql": a dead
                                    # node's queued mail waits this long for another

[run]                               # started as root: bind the ports, then run as
user  = "mailstead"                 # this user and group (`init --system` makes them)
group = "mailstead"
{run_as_root}

[log]
format = "logfmt"                   # or "json"; to stderr and to the file
file = "log/mailstead.log"          # under data_dir, rotated; false: stderr only

# [[webhooks]]                      # none by default; an example endpoint
# url     = "https://app.example/hooks/mail"
# events  = ["message.*"]           # shell-style patterns of event types
# secret  = "whsec_…"               # left out: one is made (webhook list --show-secrets)
# account = "alice@example.test"    # only this mailbox's events (or domain = "…")
# ordered = false                   # true: one at a time per account, in order
# enabled = true

# [[network.addresses]]             # addresses `mailstead net apply` keeps on the host
# iface   = "eth0"
# cidr    = "192.0.2.25/24"
# label   = "eth0:1"                # IPv4 only; the old `ifconfig eth0:1` alias name
# persist = "auto"                  # or ifupdown, ifcfg, nm, netplan, networkd; "none"
"""


def default_config_text(domain: str, hostname: str, *, system: bool = False) -> str:
    """A commented ``mailstead.toml`` with the defaults, for ``mailstead init``.

    ``system``: the standard ports on all addresses and ``/var/lib/mailstead``
    (``init --system``); otherwise loopback test ports and ``var`` beside the file.

    Raises ConfigError if ``domain`` or ``hostname`` is not a domain name.
    """
    r = Reader("mailstead init")
    domain_name(r, domain, "--domain")
    domain_name(r, hostname, "--hostname")
    # A JSON string is a valid TOML basic string (same escapes).
    return TEMPLATE.format(
        data_dir=json.dumps(SYSTEM_DATA_DIR if system else "var"),
        listen=_SYSTEM_LISTEN if system else _LOCAL_LISTEN,
        run_as_root=_SYSTEM_RUN_AS_ROOT if system else _LOCAL_RUN_AS_ROOT,
        hostname=json.dumps(hostname, ensure_ascii=False),
        domain=json.dumps(domain, ensure_ascii=False),
    )
