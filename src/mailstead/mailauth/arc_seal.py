"""ARC sealing (RFC 8617 §5.1) of mail we forward: the next hop learns what we saw.

When mail from another server reaches an alias of ours whose targets
include remote addresses, the copy we queue for them gets an ARC set
before it is queued:

* ``ARC-Authentication-Results: i=N; <hostname>; …`` — the results of our
  own Authentication-Results field of that message (SPF, DKIM, ARC, DMARC
  as we judged them at receipt);
* ``ARC-Message-Signature`` — a DKIM-like signature of the message as it
  leaves (relaxed/relaxed, the header fields we DKIM-sign, oversigned);
* ``ARC-Seal`` — signs the whole chain, with ``cv=`` from the ``arc=``
  result of our verification (``none`` for the first set).

The seal is made with the RSA DKIM key of the domain the alias belongs to
(``d=`` names the sealing ADMD, RFC 8617 §5.1): that is the domain the
sender addressed and the final recipient knows as the forwarder, and its
key is already published (``mailstead dns-records``); the hostname
usually has no key of its own. RSA, because ``rsa-sha256`` is what every
ARC validator knows (dkimpy seals with nothing else).

Mail our own users submit is DKIM-signed at delivery (``DKIMSigner``) and
never sealed: there is no earlier hop whose results need carrying.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dkim

from mailstead.mailauth.dkim import DKIMError, DKIMKeys, oversigned_headers

__all__ = ["ARCSealer"]

log = logging.getLogger("mailstead.mailauth")


class ARCSealer:
    """Makes the ARC set for a forwarded message with a domain's RSA DKIM key.

    ``authserv_id`` (our hostname) names the Authentication-Results field
    the set is made from; ``clock`` gives the seal's ``t=``.
    """

    def __init__(
        self, keys: DKIMKeys, authserv_id: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.authserv_id = authserv_id
        self.clock = clock

    def seal(self, message: bytes, domain: str) -> bytes:
        """The three ARC fields (CRLF-terminated, folded) to prepend to ``message``.

        Empty — the message goes unsealed, with a log line — when ``domain``
        has no RSA key, the message has no Authentication-Results of ours or
        no From field, or the chain is already at its 50th set.
        """
        try:
            keys = [key for key in self.keys.signing_keys(domain) if key.algorithm == "rsa"]
        except DKIMError as exc:
            log.warning("not ARC-sealed: %s", exc)
            return b""
        if not keys:
            log.info("not ARC-sealed: %s has no RSA DKIM key", domain)
            return b""
        key = keys[0]
        try:
            include = oversigned_headers(message)
            fields = dkim.arc_sign(
                message,
                key.selector.encode("ascii"),
                key.domain.encode("ascii"),
                key._dkimpy_key,
                self.authserv_id.encode("ascii"),
                include_headers=include,
                timestamp=int(self.clock()),
                linesep=b"\r\n",
            )
        except Exception as exc:  # dkimpy and authres on hostile headers: never a refusal
            log.warning("not ARC-sealed: %s", _first_line(exc))
            return b""
        if not fields:
            # dkimpy found no Authentication-Results of ours, or a chain
            # with sets but no arc= result: there is nothing to attest.
            log.info("not ARC-sealed: no Authentication-Results of %s", self.authserv_id)
            return b""
        return b"".join(bytes(field) for field in fields)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
