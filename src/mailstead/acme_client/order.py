"""One ACME order (RFC 8555 §7.4), run with certbot's ``acme`` package.

Blocking (the package uses requests): :func:`issue` runs in a thread while
the responder answers the validations on the event loop.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from acme import client, crypto_util, errors, messages
from acme.challenges import ChallengeResponse
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.b64 import b64encode
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from requests.adapters import HTTPAdapter

import mailstead
from mailstead.acme_client.files import Issued, new_key_pem
from mailstead.acme_client.request import OrderError, Request
from mailstead.acme_client.responders import Responder
from mailstead.peertext import log_text

__all__ = ["issue"]

log = logging.getLogger("mailstead.acme")

# How long an order may take, validations and issuance included.
ORDER_DEADLINE = datetime.timedelta(seconds=90)
_NETWORK_TIMEOUT = 30


class _Ready(ChallengeResponse):
    # RFC 8555 §7.5.1: the client says it is ready with an empty JSON object.
    typ = "mailstead-ready"

    def __bool__(self) -> bool:
        # No fields make it falsy, and the package sends a falsy object as
        # POST-as-GET (an empty payload), which does not start validation.
        return True


class _TrustAdapter(HTTPAdapter):
    """Verifies the ACME server against ``ca_file`` instead of the system's roots."""

    def __init__(self, ca_file: Path) -> None:
        super().__init__()
        self._ca_file = str(ca_file)

    # **kwargs: the parameters' types are requests' private aliases, and vary by version.
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        # True, or a bundle requests found in REQUESTS_CA_BUNDLE: ours instead.
        if kwargs.get("verify", True) is not False:
            kwargs["verify"] = self._ca_file
        return super().send(request, **kwargs)


def issue(request: Request, account_key_pem: bytes, responder: Responder) -> Issued:
    """Run one order for ``request.names``; the certificate and a fresh key.

    Raises OrderError for anything the ACME server or the network refused.
    """
    try:
        return _issue(request, account_key_pem, responder)
    except messages.Error as exc:
        raise OrderError(_problem(exc)) from None
    except errors.ValidationError as exc:
        reasons = [
            f"{authzr.body.identifier.value}: {_problem(chall.error)}"
            for authzr in exc.failed_authzrs
            for chall in authzr.body.challenges
            if chall.error is not None
        ]
        raise OrderError(
            "validation failed: " + ("; ".join(reasons) or "no reason given")
        ) from None
    except errors.TimeoutError:
        raise OrderError(f"no certificate within {ORDER_DEADLINE.seconds} s") from None
    except errors.Error as exc:
        raise OrderError(f"ACME error: {log_text(str(exc))}") from None
    except requests.RequestException as exc:
        raise OrderError(f"cannot reach {request.directory}: {_cause(exc)}") from None


def _issue(request: Request, account_key_pem: bytes, responder: Responder) -> Issued:
    account_key = serialization.load_pem_private_key(account_key_pem, password=None)
    if not isinstance(account_key, ec.EllipticCurvePrivateKey):
        raise OrderError("the account key is not an ECDSA key")
    jwk = JWKEC(key=account_key)
    net = client.ClientNetwork(
        jwk,
        alg=ES256,
        user_agent=f"mailstead/{mailstead.__version__}",
        timeout=_NETWORK_TIMEOUT,
    )
    if request.ca_file is not None:
        net.session.mount("https://", _TrustAdapter(request.ca_file))
    acme = client.ClientV2(client.ClientV2.get_directory(request.directory, net), net)
    contact = (f"mailto:{request.email}",) if request.email else ()
    registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as exc:
        # RFC 8555 §7.3.1: this key already has an account; its URL is all we need.
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())

    key_pem = new_key_pem()
    order = acme.new_order(crypto_util.make_csr(key_pem, list(request.names)))
    for authz in order.authorizations:
        name = authz.body.identifier.value
        if authz.body.status == messages.STATUS_VALID:
            continue  # RFC 8555 §7.1.4: an authorization may be reused
        challb = _pick(authz.body.challenges, request.challenge, name)
        token = _field(challb.chall.to_partial_json(), "token")
        # RFC 8555 §8.1: token "." base64url(SHA-256 JWK thumbprint, RFC 7638)
        thumbprint = b64encode(jwk.thumbprint(hash_function=hashes.SHA256)).decode()
        responder.add(name, token, f"{token}.{thumbprint}")
        # Not acme.answer_challenge: it insists on a Link rel="up" header,
        # which some servers (pebble 2.4) leave out.
        net.post(challb.uri, _Ready(), new_nonce_url=acme.directory["newNonce"])
        log.info("acme: %s challenge for %s is ready", request.challenge, name)
    deadline = datetime.datetime.now() + ORDER_DEADLINE
    done = acme.poll_and_finalize(order, deadline)
    if not done.fullchain_pem:
        raise OrderError("the ACME server returned no certificate")
    return Issued(done.fullchain_pem.encode("ascii"), key_pem)


def _pick(
    challenges: Sequence[messages.ChallengeBody], kind: str, name: str
) -> messages.ChallengeBody:
    for challb in challenges:
        if _field(challb.chall.to_json(), "type") == kind:
            return challb
    offered = ", ".join(_field(c.chall.to_json(), "type") for c in challenges)
    raise OrderError(f"{name}: the ACME server offers no {kind} challenge (only {offered})")


def _field(jobj: Mapping[str, object], key: str) -> str:
    value = jobj.get(key)
    if not isinstance(value, str):
        raise OrderError(f"malformed challenge: no {key}")
    return value


def _problem(error: messages.Error | None) -> str:
    """An RFC 7807 problem document as one line: its type's last word and detail."""
    if error is None:
        return "unknown error"
    kind = log_text((error.typ or "").rsplit(":", 1)[-1])
    # The CA's words: peer text, kept to one line (it lands in the log and state.json).
    return f"{kind}: {log_text(error.detail)}" if error.detail else kind or log_text(str(error))


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests error (refused, no route, bad certificate)."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    text = str(exc)
    return text.rsplit("] ", 1)[-1] if "] " in text else text
