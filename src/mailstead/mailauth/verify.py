"""SPF, DKIM, ARC and DMARC on mail from other servers: one :class:`~mailstead.mailauth.hook.Check`.

Everything happens at the body stage, in the receiver's worker thread, with
one DNS :class:`~mailstead.mailauth.lookups.Budget` per message:

1. SPF (RFC 7208) for the client's address and the MAIL FROM domain, or
   the HELO name for the null sender (§2.4);
2. every DKIM signature (RFC 6376);
3. the ARC chain of the forwarders before us (RFC 8617);
4. DMARC (RFC 7489) from SPF and DKIM, with alignment against the From domain.

Policy: a DMARC ``fail`` whose disposition is ``reject`` is refused with
550 5.7.1, sent to Junk or accepted as ``dmarc_reject`` says; ``quarantine``
goes to Junk (unless ``dmarc_reject = "accept"``). SPF ``fail`` alone
refuses nothing: DMARC decides (an SPF ``-all`` breaks forwarding). A
DMARC failure is delivered after all when the ARC chain passes and a sealer
of ``arc_trusted_sealers`` vouches for the From domain (RFC 7489 §10.2
local policy, RFC 8617 §7.2; :func:`~mailstead.mailauth.arc.trusted_sealer`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from mailstead.config.auth_checks import AuthChecksConfig
from mailstead.mailauth import arc, authresults, dmarc
from mailstead.mailauth.authresults import value
from mailstead.mailauth.dkim_verify import DKIMResult, verify_all
from mailstead.mailauth.hook import Client, Verdict
from mailstead.mailauth.lookups import AuthDNS, Budget
from mailstead.mailauth.spf import SPFResult, check_host, run
from mailstead.proto.smtp.replies import Reply

__all__ = ["DMARC_REJECTED", "AuthChecks"]

#: RFC 7489 §10.3 suggests naming DMARC in the reply text.
DMARC_REJECTED = Reply(550, "5.7.1", "Message rejected by the sender domain's DMARC policy")


class AuthChecks:
    """Verifies SPF, DKIM and DMARC and writes their Authentication-Results parts.

    Owns the DNS client and its cache for these checks (shared by all
    sessions of the listener; thread-safe).
    """

    def __init__(self, config: AuthChecksConfig, dns: AuthDNS, *, hostname: str) -> None:
        self.config = config
        self.dns = dns
        self.hostname = hostname

    def connection(self, client: Client) -> Verdict | None:
        return None

    def sender(self, client: Client, sender: str) -> Verdict | None:
        return None

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        return None

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> Verdict:
        budget = Budget.of(self.config.dns_timeout)
        spf, spf_domain, spf_property = self._spf(client, sender, budget)
        signatures = verify_all(content, self.dns, budget)
        fields = authresults.header_fields(content)  # parsed once for ARC and DMARC
        chain = arc.verify_chain(content, self.dns, budget, fields)
        verdict = dmarc.evaluate(
            authresults.from_values(content, fields),
            spf_result=spf.result,
            spf_domain=spf_domain,
            dkim_passes=[s.domain for s in signatures if s.result == "pass"],
            txt=lambda name: self.dns.txt(name, budget),
        )
        action = self._action(verdict)
        vouching = None
        if action != "deliver":
            vouching = arc.trusted_sealer(
                chain, verdict.header_from, self.config.arc_trusted_sealers
            )
            if vouching is not None:
                # RFC 7489 §10.2 (local policy), RFC 8617 §7.2: the forwarder
                # we trust saw DMARC pass before the message was changed.
                action = "deliver"
                verdict = dataclasses.replace(verdict, disposition="none")
        results = (
            _spf_part(spf, spf_property),
            *(_dkim_part(s) for s in signatures),
            *(() if signatures else ("dkim=none",)),
            arc.result_part(chain, client.ip),
            _dmarc_part(verdict, vouching),
        )
        dmarc_event: dict[str, object] = {
            "result": verdict.result,
            "header_from": verdict.header_from,
            "policy": verdict.policy,
            "disposition": verdict.disposition,
        }
        if vouching is not None:
            dmarc_event["override"] = {"reason": "trusted_forwarder", "sealer": vouching}
        event: dict[str, object] = {
            "authentication": {
                "spf": {"result": spf.result, "domain": spf_domain},
                "dkim": [
                    {"result": s.result, "domain": s.domain, "selector": s.selector}
                    for s in signatures
                ],
                "arc": {
                    "result": chain.result,
                    "sets": len(chain.sets),
                    "sealer": chain.sealer,
                },
                "dmarc": dmarc_event,
                "action": action,
            }
        }
        log = {
            "spf": spf.result,
            "dkim": ",".join(s.result for s in signatures) or "none",
            "arc": chain.result,
            "dmarc": verdict.result,
        }
        if vouching is not None:
            log["dmarc_override"] = f"arc:{vouching}"
        if action == "reject":
            cause = f"dmarc={verdict.result} p={verdict.policy} header.from={verdict.header_from}"
            return Verdict(DMARC_REJECTED, results, event=event, log=log, cause=cause)
        return Verdict(None, results, junk=action == "junk", event=event, log=log)

    def _spf(self, client: Client, sender: str, budget: Budget) -> tuple[SPFResult, str, str]:
        """SPF of MAIL FROM, or of the HELO name for the null sender (RFC 7208 §2.4)."""
        if sender:
            domain = sender.rpartition("@")[2]
            prop = f"smtp.mailfrom={value(sender)}"
            identity = sender
        else:
            domain = client.helo
            prop = f"smtp.helo={value(client.helo)}"
            identity = f"postmaster@{client.helo}"
        if client.helo.startswith("[") or not domain:
            return SPFResult("none", domain), domain.lower(), prop
        evaluation = check_host(
            client.ip,
            domain,
            identity,
            client.helo,
            receiver=self.hostname,
            timestamp=int(time.time()),
        )
        result = run(evaluation, lambda query: self.dns.lookup(query, budget))
        return result, domain.lower(), prop

    def _action(self, verdict: dmarc.DMARCResult) -> str:
        """deliver, junk or reject (the config's answer to the DMARC disposition)."""
        if verdict.result != "fail" or self.config.dmarc_reject == "accept":
            return "deliver"
        if verdict.disposition == "reject":
            return "reject" if self.config.dmarc_reject == "reject" else "junk"
        if verdict.disposition == "quarantine":
            return "junk"
        return "deliver"


def _spf_part(spf: SPFResult, prop: str) -> str:
    comment = f" ({_comment(spf.detail)})" if spf.detail else ""
    return f"spf={spf.result}{comment} {prop}"


def _dkim_part(sig: DKIMResult) -> str:
    props = f"header.d={value(sig.domain or 'unknown')} header.s={value(sig.selector or 'unknown')}"
    if sig.b_prefix:
        props += f" header.b={value(sig.b_prefix)}"
    comment = f" ({_comment(sig.detail)})" if sig.detail else ""
    return f"dkim={sig.result}{comment} {props}"


def _dmarc_part(verdict: dmarc.DMARCResult, vouching: str | None = None) -> str:
    comment = ""
    if verdict.policy:
        # The override reason as RFC 7489 Appendix C names it (trusted_forwarder).
        override = f" override=trusted_forwarder:{vouching}" if vouching else ""
        comment = f" (p={verdict.policy} dis={verdict.disposition}{override})"
    elif verdict.detail:
        comment = f" ({_comment(verdict.detail)})"
    header_from = f" header.from={value(verdict.header_from)}" if verdict.header_from else ""
    return f"dmarc={verdict.result}{comment}{header_from}"


def _comment(text: str) -> str:
    """Text safe inside an RFC 5322 comment."""
    return "".join(ch for ch in text if " " <= ch < "\x7f" and ch not in "()\\")[:120]
