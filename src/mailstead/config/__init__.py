"""Typed configuration, loaded from ``mailstead.toml``.

The file format is the external contract of DESIGN.md §3; ``docs/config.md``
documents it for operators. Loading is strict: an unknown key, a value of the
wrong type or a bad value raises :class:`ConfigError` with one line that
names the file and the key path (``mailstead.toml: listen.smtp[0]: expected
"host:port", got "foo"``), because a typo that is silently ignored is an
outage later.

Everything is resolved at load time: relative paths become absolute, domains
are normalised, durations become seconds, so the rest of the program never
re-parses configuration text.

One module per ``[section]`` holds its dataclass, its defaults and its
loader; ``root.py`` holds the top-level keys and :class:`Config`;
``reader.py`` the type-checked access and error lines every loader shares;
``values.py`` the value syntaxes (durations, ``host:port``); ``template.py``
the file ``mailstead init`` writes. Import from ``mailstead.config``.
"""

from mailstead.config.abuse import AbuseConfig, Rate
from mailstead.config.auth import AuthConfig
from mailstead.config.auth_checks import AuthChecksConfig
from mailstead.config.delivery import DEFAULT_DELAY_WARNING, DeliveryConfig
from mailstead.config.http_client import HttpClientConfig
from mailstead.config.limits import ConnectionLimitsConfig
from mailstead.config.listen import ListenConfig
from mailstead.config.network import DeclaredAddress, NetworkConfig
from mailstead.config.pop3 import Pop3Config
from mailstead.config.reader import ConfigError
from mailstead.config.root import Config, load_config
from mailstead.config.run import RunConfig
from mailstead.config.storage import StorageConfig
from mailstead.config.template import default_config_text
from mailstead.config.tls import TLSConfig
from mailstead.config.values import HostPort, default_hostname, parse_duration, parse_hostport
from mailstead.config.webhooks import WebhookConfig

__all__ = [
    "DEFAULT_DELAY_WARNING",
    "AbuseConfig",
    "AuthChecksConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConnectionLimitsConfig",
    "DeclaredAddress",
    "DeliveryConfig",
    "HostPort",
    "HttpClientConfig",
    "ListenConfig",
    "NetworkConfig",
    "Pop3Config",
    "Rate",
    "RunConfig",
    "StorageConfig",
    "TLSConfig",
    "WebhookConfig",
    "default_config_text",
    "default_hostname",
    "load_config",
    "parse_duration",
    "parse_hostport",
]
