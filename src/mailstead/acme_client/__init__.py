"""Automatic certificates with ACME (RFC 8555): orders, challenges, renewal, hot swap.

Named ``acme_client`` so it never shadows certbot's ``acme`` package, which
it drives. ``[tls.acme]`` configures it (docs/tls.md).
"""

from mailstead.acme_client.files import AcmeFiles, Backoff, Validity
from mailstead.acme_client.keeper import (
    CertificateKeeper,
    Outcome,
    keep_certificate,
    serving_files,
)
from mailstead.acme_client.request import OrderError

__all__ = [
    "AcmeFiles",
    "Backoff",
    "CertificateKeeper",
    "OrderError",
    "Outcome",
    "Validity",
    "keep_certificate",
    "serving_files",
]
