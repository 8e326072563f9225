"""Loading mailstead.toml: every key of DESIGN.md §3, and one clear line for every mistake."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mailstead.config import Config, ConfigError, ListenConfig, load_config

FULL = """
hostname = "Mail.Example.TEST"
data_dir = "state"
domains  = ["example.test", "Bücher.example", "EXAMPLE.test", "xn--bcher-kva.example", "b.test"]

[listen]
smtp        = ["0.0.0.0:25", "[::]:25"]
submission  = ["127.0.0.1:587"]
submissions = []
imap  = ["localhost:143"]
imaps = ["[::1]:993"]
pop3  = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:995"]

[tls]
cert = "certs/fullchain.pem"
key  = "/etc/ssl/private/mail.key"

[storage]
format = "mbox"

[delivery]
dns_servers  = ["127.0.0.1:5353", "192.0.2.53", "[2001:db8::53]:5300", "2001:db8::1"]
smtp_port    = 2525
source_ip    = "192.0.2.10"
helo_name    = "out.example.test"
retry_schedule = ["30s", "1m", "1h30m", "2d"]
max_lifetime = "1w"
delay_warning = "30m"

[http_client]
allow_networks = ["127.0.0.0/8", "fd00::/8"]

[pop3]
delete_retrieved = true

[auth]
password_cache_ttl = "10m"

[limits]
watchdog_timeout = "3s"
shutdown_timeout = "1m"
connections_per_network = 120
line_timeout = "20s"
login_timeout = "2m"
transaction_timeout = "1h"
stress_threshold = 70
stress_timeout = "5s"
auth_penalty_max = "30s"
auth_block_after = 50
auth_block_time = "1h"

[[webhooks]]
url    = "https://app.example/hooks/mail"
events = ["message.*", "auth.failed"]
secret = "whsec_x"
domain = "Example.TEST"
account = "Alice@Example.test"
ordered = true
enabled = false

[[webhooks]]
url = "http://127.0.0.1:8080/"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def full(tmp_path: Path) -> Config:
    return load_config(write(tmp_path, FULL))


def test_top_level_keys(full: Config, tmp_path: Path) -> None:
    assert full.path == tmp_path / "mailstead.toml"
    assert full.hostname == "mail.example.test"
    assert full.data_dir == tmp_path / "state"
    assert full.mail_root == tmp_path / "state" / "mail"
    assert full.db_path("directory") == tmp_path / "state" / "directory.sqlite3"


def test_domains_are_normalized_deduplicated_in_order(full: Config) -> None:
    assert full.domains == ("example.test", "xn--bcher-kva.example", "b.test")


def test_listen_addresses_become_host_port_pairs(full: Config) -> None:
    assert full.listen == ListenConfig(
        smtp=(("0.0.0.0", 25), ("::", 25)),
        submission=(("127.0.0.1", 587),),
        submissions=(),
        imap=(("localhost", 143),),
        imaps=(("::1", 993),),
        pop3=(("127.0.0.1", 0),),
        pop3s=(("127.0.0.1", 995),),
    )


def test_tls_paths_are_relative_to_data_dir(full: Config, tmp_path: Path) -> None:
    assert full.tls.cert == tmp_path / "state" / "certs" / "fullchain.pem"
    assert full.tls.key == Path("/etc/ssl/private/mail.key")


def test_storage_delivery_http_client_pop3(full: Config) -> None:
    assert full.storage.format == "mbox"
    d = full.delivery
    assert d.dns_servers == (
        ("127.0.0.1", 5353),
        ("192.0.2.53", 53),
        ("2001:db8::53", 5300),
        ("2001:db8::1", 53),
    )
    assert (d.smtp_port, d.source_ip, d.helo_name) == (2525, "192.0.2.10", "out.example.test")
    assert d.retry_schedule == (30, 60, 5400, 172800)
    assert d.max_lifetime == 7 * 86400
    assert d.delay_warning == 1800
    assert full.http_client.allow_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert full.pop3.delete_retrieved is True
    assert full.auth.password_cache_ttl == 600
    assert (full.limits.watchdog_timeout, full.limits.shutdown_timeout) == (3, 60)
    policy = full.limits.policy()
    assert (policy.line_timeout, policy.login_timeout, policy.transaction_timeout) == (
        20,
        120,
        3600,
    )
    assert (policy.stress_fraction, policy.stress_timeout) == (0.7, 5)
    assert full.limits.connections_per_network == 120
    assert (full.limits.auth_penalty_max, full.limits.auth_block_after) == (30, 50)
    assert full.limits.auth_block_time == 3600


def test_webhooks(full: Config) -> None:
    first, second = full.webhooks
    assert first.url == "https://app.example/hooks/mail"
    assert first.events == ("message.*", "auth.failed")
    assert first.secret == "whsec_x"
    assert (first.domain, first.account) == ("example.test", "alice@example.test")
    assert first.ordered and not first.enabled
    assert (second.events, second.secret) == (("*",), None)
    assert (second.domain, second.account, second.ordered, second.enabled) == (
        None,
        None,
        False,
        True,
    )


def test_only_domains_is_required(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'domains = ["example.test"]\n'))
    assert config.data_dir == tmp_path / "var"
    assert config.tls.cert == tmp_path / "var" / "tls" / "cert.pem"
    assert config.tls.key == tmp_path / "var" / "tls" / "key.pem"
    assert config.listen.smtp == (("127.0.0.1", 2525),)
    assert config.listen.pop3s == (("127.0.0.1", 2995),)
    assert config.storage.format == "maildir"
    assert config.delivery.dns_servers == ()
    assert config.delivery.smtp_port == 25
    assert config.delivery.source_ip is None
    assert config.delivery.helo_name == config.hostname
    assert config.delivery.retry_schedule == (60, 300, 900, 1800, 3600, 7200, 14400, 28800)
    assert config.delivery.max_lifetime == 5 * 86400
    assert config.delivery.delay_warning == 4 * 3600
    assert config.http_client.allow_networks == ()
    assert config.webhooks == ()
    assert config.pop3.delete_retrieved is False
    assert config.auth.password_cache_ttl == 3600
    assert (config.limits.watchdog_timeout, config.limits.shutdown_timeout) == (10, 30)
    assert config.workers == 0
    assert config.hostname  # socket.getfqdn(), or "localhost"


D = 'domains = ["example.test"]\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("hostnme = 'x'\n" + D, "hostnme: unknown key"),
        ("hostname = 42\n" + D, "hostname: expected a string, got 42"),
        ("hostname = 'not a host'\n" + D, 'hostname: expected a domain name, got "not a host"'),
        ("hostname = '[127.0.0.1]'\n" + D, "hostname: expected a domain name"),
        ("data_dir = ''\n" + D, "data_dir: must not be empty"),
        ("data_dir = ['var']\n" + D, "data_dir: expected a string, got an array"),
        ("", "domains: missing"),
        ("domains = []", "domains: at least one domain is required"),
        ("domains = 'example.test'", 'domains: expected an array of strings, got "example.test"'),
        ("domains = ['ok.test', 3]", "domains[1]: expected a string, got 3"),
        ("domains = ['../etc']", 'domains[0]: expected a domain name, got "../etc"'),
        ("domains = ['[10.0.0.1]']", "domains[0]: expected a domain name"),
        (D + "listen = 1", "listen: expected a table, got 1"),
        (D + "[listen]\nsmtpp = []", "listen.smtpp: unknown key"),
        (D + "[listen]\nsmtp = ['foo']", 'listen.smtp[0]: expected "host:port", got "foo"'),
        (D + "[listen]\nsubmission = '127.0.0.1:587'", "listen.submission: expected an array"),
        (D + "[listen]\nsubmissions = [465]", "listen.submissions[0]: expected a string, got 465"),
        (D + "[listen]\nimap = ['::1:143']", 'listen.imap[0]: expected "host:port", got "::1:143"'),
        (D + "[listen]\nimaps = ['h:70000']", "listen.imaps[0]: expected"),
        (D + "[listen]\npop3 = ['h:x']", "listen.pop3[0]: expected"),
        (D + "[listen]\npop3s = ['']", 'listen.pop3s[0]: expected "host:port", got ""'),
        (D + "[tls]\ncert = 1", "tls.cert: expected a string, got 1"),
        (D + "[tls]\nkey = ''", "tls.key: must not be empty"),
        (D + "[tls]\nchain = 'x'", "tls.chain: unknown key"),
        (D + "[storage]\nformat = 'maildir++'", 'storage.format: expected "maildir" or "mbox"'),
        (D + "[storage]\nformat = true", "storage.format: expected a string, got true"),
        (D + "[delivery]\ndns_servers = ['resolver.example']", "delivery.dns_servers[0]: expected"),
        (D + "[delivery]\ndns_servers = ['127.0.0.1:0']", "delivery.dns_servers[0]: expected"),
        (D + "[delivery]\nsmtp_port = '25'", 'delivery.smtp_port: expected an integer, got "25"'),
        (D + "[delivery]\nsmtp_port = true", "delivery.smtp_port: expected an integer, got true"),
        (D + "[delivery]\nsmtp_port = 0", "delivery.smtp_port: expected a port 1-65535, got 0"),
        (D + "[delivery]\nsmtp_port = 65536", "delivery.smtp_port: expected a port 1-65535"),
        (
            D + "[delivery]\nsource_ip = 'eth0'",
            'delivery.source_ip: expected an IP address, got "eth0"',
        ),
        (
            D + "[delivery]\nhelo_name = 'a b'",
            'delivery.helo_name: expected a domain name, got "a b"',
        ),
        (D + "[delivery]\nretry_schedule = []", "delivery.retry_schedule: at least one interval"),
        (
            D + "[delivery]\nretry_schedule = ['1m', 'soon']",
            'delivery.retry_schedule[1]: expected a duration, got "soon"',
        ),
        (
            D + "[delivery]\nretry_schedule = [60]",
            "delivery.retry_schedule[0]: expected a string, got 60",
        ),
        (D + "[delivery]\nmax_lifetime = '0d'", "delivery.max_lifetime: a duration must be longer"),
        (D + "[delivery]\nmax_lifetime = 5", "delivery.max_lifetime: expected a string, got 5"),
        (D + "[delivery]\nretries = 3", "delivery.retries: unknown key"),
        (
            D + "[http_client]\nallow_networks = ['127.0.0.1/8']",
            "http_client.allow_networks[0]: expected a network",
        ),
        (
            D + "[http_client]\nallow_networks = ['lan']",
            'http_client.allow_networks[0]: expected a network like "127.0.0.0/8", got "lan"',
        ),
        (
            D + "[pop3]\ndelete_retrieved = 'yes'",
            'pop3.delete_retrieved: expected true or false, got "yes"',
        ),
        (
            D + "[pop3]\ndelete_retrieved = 1",
            "pop3.delete_retrieved: expected true or false, got 1",
        ),
        (D + "[pop3]\nkeep = true", "pop3.keep: unknown key"),
        (D + "[auth]\npassword_cache_ttl = 60", "auth.password_cache_ttl: expected a string"),
        (
            D + "[auth]\npassword_cache_ttl = 'forever'",
            'auth.password_cache_ttl: expected a duration like "30s", "5m", "1h" or "5d"'
            ' (or "0" for never), got "forever"',
        ),
        (D + "[auth]\nmechanisms = ['plain']", "auth.mechanisms: unknown key"),
        (D + "[delivery]\ndelay_warning = 4", "delivery.delay_warning: expected a string, got 4"),
        (D + "[delivery]\ndelay_warning = '0m'", "delivery.delay_warning: a duration must be"),
        (D + "[limits]\nwatchdog_timeout = '0s'", "limits.watchdog_timeout: a duration must be"),
        (D + "[limits]\nshutdown_timeout = 30", "limits.shutdown_timeout: expected a string"),
        (D + "[limits]\nstress_threshold = 0", "limits.stress_threshold: expected 1 to 100"),
        (
            D + "[limits]\nconnections_per_ip = 9\nconnections_per_network = 3",
            "limits.connections_per_network: expected 9 to 1000000, got 3",
        ),
        (D + "[limits]\nauth_block_after = 0", "limits.auth_block_after: expected 1 to"),
        (D + "workers = -1", "workers: expected 0 (one per CPU) to 256, got -1"),
        (D + "workers = 'two'", 'workers: expected a whole number, got "two"'),
        (D + "[webhooks]\nurl = 'https://a.example/'", "webhooks: expected an array of tables"),
        (D + "[[webhooks]]\nevents = ['*']", "webhooks[0].url: missing"),
        (
            D + "[[webhooks]]\nurl = 'ftp://a.example/'",
            'webhooks[0].url: expected an http:// or https:// URL, got "ftp://a.example/"',
        ),
        (D + "[[webhooks]]\nurl = 'https:///path'", "webhooks[0].url: expected an http"),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nevents = []",
            "webhooks[0].events: at least one",
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nevents = ['Message Received']",
            "webhooks[0].events[0]: invalid event pattern",
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nsecret = ''",
            "webhooks[0].secret: must not be empty",
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nsecrte = 'x'",
            "webhooks[0].secrte: unknown key",
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nevents = ['delivery.failed']",
            "webhooks[0].events[0]: 'delivery.failed' matches no event type",
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nsecret = 'hunter2'",
            'webhooks[0].secret: expected a Standard Webhooks secret "whsec_<base64>"',
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\naccount = 'nobody'",
            'webhooks[0].account: expected a mail address, got "nobody"',
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/'\nordered = 'yes'",
            "webhooks[0].ordered: expected true or false",
        ),
        ("domains = [", "invalid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_control_characters_in_values_stay_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, D + '[listen]\nsmtp = ["a\\nb:25"]\n')
    with pytest.raises(
        ConfigError, match=r'listen\.smtp\[0\]: expected "host:port", got "a\\nb:25"'
    ):
        load_config(path)


def test_missing_config_tells_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"^no config at .*absent\.toml; run `mailstead init`$"):
        load_config(path)


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_bytes(b'domains = ["\xff"]\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_db_path_refuses_names_that_leave_data_dir(full: Config) -> None:
    with pytest.raises(ValueError):
        full.db_path("../directory")


@pytest.mark.parametrize("text", ["0", "0s"])
def test_password_cache_and_delay_warning_can_be_turned_off(tmp_path: Path, text: str) -> None:
    path = write(
        tmp_path,
        f'domains = ["example.test"]\n[auth]\npassword_cache_ttl = "{text}"\n'
        f'[delivery]\ndelay_warning = "{text}"\n',
    )
    config = load_config(path)
    assert config.auth.password_cache_ttl == 0
    assert config.delivery.delay_warning == 0
