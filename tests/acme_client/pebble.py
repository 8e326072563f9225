"""Debian's ``pebble`` ACME test server on loopback, resolving names with a DNS server of ours.

Pebble validates for real: it looks the names up in the test's
:class:`~mailstead.testing.dns.DNSServer` (``-dnsserver``), where they point
at 127.0.0.1, and connects to the ``httpPort``/``tlsPort`` of its config,
which the test makes the responder listen on. Its own HTTPS certificate is
one the test makes (Debian ships none); the roots it issues under come from
its management API (``/roots/0``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailstead.testing.dns import DNSServer
from tests.e2e.harness import free_port
from tests.tools import require


@dataclass(frozen=True)
class Pebble:
    """A running pebble: where to reach it and what to trust."""

    directory: str
    #: The CA file trusting pebble's own HTTPS endpoint (``[tls.acme] ca_file``).
    api_ca: Path
    #: The root pebble issues certificates under (PEM).
    root_pem: bytes
    http_port: int
    tls_port: int

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts what pebble issues, and checks the name."""
        context = ssl.create_default_context(cadata=self.root_pem.decode("ascii"))
        return context


def _api_certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a 127.0.0.1/localhost certificate for pebble's API."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble api test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "api-ca.pem", tmp / "api-cert.pem", tmp / "api-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def _get(url: str, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        body: bytes = response.read()
        return body


@contextmanager
def running_pebble(tmp: Path, names: list[str]) -> Iterator[Pebble]:
    """Pebble on loopback, every name in ``names`` resolving to 127.0.0.1."""
    pebble = require("pebble")
    tmp.mkdir(parents=True, exist_ok=True)
    ca, cert, key = _api_certificate(tmp)
    api, management = free_port(), free_port()
    http_port, tls_port = free_port(), free_port()
    config = tmp / "pebble.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{api}",
                    "managementListenAddress": f"127.0.0.1:{management}",
                    "certificate": str(cert),
                    "privateKey": str(key),
                    "httpPort": http_port,
                    "tlsPort": tls_port,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after 0-15 s
        "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce rejections
        "PEBBLE_AUTHZREUSE": "0",  # every order validates again
    }
    zones = {name: {"A": ["127.0.0.1"]} for name in names}
    log = (tmp / "pebble.log").open("wb")
    with DNSServer(zones) as (dns_host, dns_port):
        process = subprocess.Popen(
            [pebble, "-config", str(config), "-dnsserver", f"{dns_host}:{dns_port}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            directory = f"https://127.0.0.1:{api}/dir"
            deadline = time.monotonic() + 20
            while True:
                try:
                    _get(directory, ca)
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(
                            "pebble did not start: " + (tmp / "pebble.log").read_text()
                        ) from None
                    time.sleep(0.1)
            root = _get(f"https://127.0.0.1:{management}/roots/0", ca)
            yield Pebble(directory, ca, root, http_port, tls_port)
        finally:
            process.terminate()
            process.wait(10)
            log.close()
