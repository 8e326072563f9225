"""``[tls]``: the server's certificate and key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstead.config.reader import Reader, data_path

__all__ = ["TLSConfig", "load_tls"]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Where the server's certificate chain and private key live (absolute paths)."""

    #: PEM certificate chain, leaf first.
    cert: Path
    #: PEM private key matching ``cert``.
    key: Path


def load_tls(r: Reader, data: Mapping[str, object], data_dir: Path) -> TLSConfig:
    """The ``[tls]`` table of ``data``, its paths resolved against ``data_dir``."""
    t = r.table(data, "tls", "", ("cert", "key"))
    return TLSConfig(
        cert=data_path(r, data_dir, t.get("cert", "tls/cert.pem"), "tls.cert"),
        key=data_path(r, data_dir, t.get("key", "tls/key.pem"), "tls.key"),
    )
