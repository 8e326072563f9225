"""Which MTA-STS policy applies to a destination domain now (RFC 8461 §5.1).

:class:`MtaStsLookup` asks the DNS for ``_mta-sts.DOMAIN`` at every delivery
to the domain and fetches the policy over HTTPS only when the record's id
differs from the cached policy's or the cached policy has expired. When the
record or the policy host cannot be had, an unexpired cached policy still
applies (§5.1: a domain cannot drop its policy by breaking DNS or HTTPS);
without one, mail goes as if the domain had no policy.

It also keeps the TLS-RPT counters (RFC 8460 §4.3) of policy domains: one
per session that met, or failed, the policy's requirements, and one per
failed policy fetch.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol, TypeVar

from mailstead.clock import Clock
from mailstead.config import Config, ConfigError
from mailstead.dns import DNSError, Resolver
from mailstead.mta.mta_sts import Mode, PolicyError, parse_policy, parse_record, record_name
from mailstead.mta.mta_sts_cache import CachedPolicy, MtaStsStore
from mailstead.mta.mta_sts_fetch import FetchError, PolicyFetcher, verifying_context
from mailstead.mta.routing import Route
from mailstead.mta.transport import HostResult, TLSCheck
from mailstead.proto.smtp.replies import Reply

__all__ = ["FETCH_RETRY_DELAY", "MtaStsLookup", "PolicySource", "allowed_route", "lookup_for"]

log = logging.getLogger("mailstead.mta_sts")

#: Seconds before a policy that could not be fetched is fetched again, for
#: the same domain and id (RFC 8461 §3.3: senders "may wish to rate-limit"
#: fetches); deliveries meanwhile go as if there were no new policy.
FETCH_RETRY_DELAY = 300.0

#: Domains whose failed fetch is remembered; past it, the lapsed ones are forgotten.
_MAX_FAILED = 10000

T = TypeVar("T")


class PolicySource(Protocol):
    """Fetches a domain's policy file (:class:`~mailstead.mta.mta_sts_fetch.PolicyFetcher`)."""

    async def fetch(self, domain: str) -> bytes:
        """The body of ``domain``'s policy file, or :class:`FetchError`."""
        ...


class MtaStsLookup:
    """Owns the policy decision per domain: DNS record, cache, fetch; and the TLS-RPT counts.

    ``ca_file`` (PEM) replaces the system roots when MX certificates are
    checked (tests; a private CA). Store calls run in ``executor``.
    """

    def __init__(
        self,
        store: MtaStsStore,
        resolver: Resolver,
        fetcher: PolicySource,
        clock: Clock,
        *,
        executor: Executor | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.fetcher = fetcher
        self.clock = clock
        self.executor = executor
        self.ca_file = ca_file
        # One fetch per domain at a time: concurrent deliveries wait for it.
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: collections.Counter[str] = collections.Counter()
        # domain -> (policy id, clock time before which it is not fetched again).
        self._failed: dict[str, tuple[str, float]] = {}

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def policy(self, domain: str) -> CachedPolicy | None:
        """The policy to apply to mail for ``domain``; None for none (or ``mode: none``)."""
        lock = self._locks.setdefault(domain, asyncio.Lock())
        self._waiting[domain] += 1
        try:
            async with lock:
                found = await self._policy(domain)
        finally:
            self._waiting[domain] -= 1
            if not self._waiting[domain]:  # the last one out: no lock kept per domain
                del self._waiting[domain], self._locks[domain]
        if found is None or found.policy.mode is Mode.NONE:
            return None
        return found

    async def _policy(self, domain: str) -> CachedPolicy | None:
        cached = await self._run(lambda: self.store.get(domain))
        now = self.clock.time()
        if cached is not None and cached.expires_at <= now:
            cached = None  # §5.1: an expired policy is no policy
        try:
            policy_id = parse_record(await self.resolver.txt(record_name(domain)))
        except (DNSError, PolicyError):
            # §5.1: no (valid) record now; a cached policy stays in force
            # until it expires.
            return cached
        if cached is not None and cached.policy_id == policy_id:
            return cached  # §5.1: the id is unchanged: no fetch
        failed = self._failed.get(domain)
        if failed is not None and failed[0] == policy_id and now < failed[1]:
            return cached
        try:
            body = await self.fetcher.fetch(domain)
            policy = parse_policy(body)
        except (FetchError, PolicyError) as exc:
            if len(self._failed) >= _MAX_FAILED:
                self._failed = {d: f for d, f in self._failed.items() if f[1] > now}
            self._failed[domain] = (policy_id, now + FETCH_RETRY_DELAY)
            result = "sts-policy-invalid" if isinstance(exc, PolicyError) else exc.result_type
            log.warning("MTA-STS policy of %s not fetched (%s): %s", domain, result, exc)
            await self.count(domain, "", result)
            return cached
        self._failed.pop(domain, None)
        log.info(
            "MTA-STS policy of %s fetched: id=%s mode=%s max_age=%d mx=%s",
            domain,
            policy_id,
            policy.mode.value,
            policy.max_age,
            ",".join(policy.mx),
        )
        return await self._run(lambda: self.store.put(domain, policy_id, policy, now))

    async def apply(self, found: Route) -> tuple[Route, TLSCheck | None, Reply | None]:
        """``found`` under its domain's policy: the hosts to try, their TLS check, or a deferral.

        No policy (or an address literal, which has no domain): the route as
        it is, no check. Otherwise see :func:`allowed_route`; each MX host
        outside the policy is counted as a TLS-RPT ``validation-failure``.
        """
        if found.local or found.domain.startswith("["):
            return found, None, None
        cached = await self.policy(found.domain)
        if cached is None:
            return found, None, None
        for dest in found.destinations:
            if not cached.policy.allows(dest.host):
                await self.count(found.domain, dest.host, "validation-failure")
        kept, refused = allowed_route(found.domain, found, cached)
        enforce = cached.policy.mode is Mode.ENFORCE
        return kept, TLSCheck(found.domain, enforce, self.ca_file), refused

    async def count_session(self, check: TLSCheck, mx_host: str, result: HostResult) -> None:
        """Count (and, in testing mode, log) how one session met ``check`` (RFC 8460 §4.3)."""
        failed = result.tls_failure
        if failed is not None:
            if not check.enforce:
                log.warning(
                    "MTA-STS policy of %s: %s (testing mode: delivering anyway)",
                    check.policy_domain,
                    failed.detail,
                )
            await self.count(check.policy_domain, mx_host, failed.result_type)
        elif result.tls_verified:
            await self.count(check.policy_domain, mx_host, "success")

    async def count(self, domain: str, mx_host: str, result_type: str) -> None:
        """Count one outcome of a policy domain for TLS-RPT: ``success`` or a failure type."""
        now = self.clock.time()
        try:
            await self._run(
                lambda: self.store.count_result(now, domain, "sts", mx_host, result_type)
            )
        except Exception:  # a report a little short never stops mail
            log.exception("TLS-RPT count for %s not stored", domain)


def lookup_for(
    config: Config, resolver: Resolver, clock: Clock, executor: Executor | None
) -> MtaStsLookup:
    """The lookup ``[delivery]`` asks for: the store in the data directory, HTTPS on 443."""
    ca_file = config.data_dir / config.delivery.tls_ca_file if config.delivery.tls_ca_file else None
    try:
        context = verifying_context(str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{config.path}: delivery.tls_ca_file: {ca_file}: {why}") from None
    fetcher = PolicyFetcher(resolver, ssl_context=context)
    store = MtaStsStore(config.db_path("mta_sts"))
    return MtaStsLookup(store, resolver, fetcher, clock, executor=executor, ca_file=ca_file)


def allowed_route(domain: str, found: Route, cached: CachedPolicy) -> tuple[Route, Reply | None]:
    """``found`` with only the MX hosts ``cached``'s policy allows (RFC 8461 §4.1, §5).

    Under ``enforce`` the others are dropped; when none is left, the second
    value is the deferral that says so. Under ``testing`` the route is kept
    whole and each host that does not match is logged.
    """
    policy = cached.policy
    outside = [d.host for d in found.destinations if not policy.allows(d.host)]
    if not outside:
        return found, None
    hosts = ", ".join(outside)
    verb = "does" if len(outside) == 1 else "do"
    reason = f"MTA-STS policy of {domain}: {hosts} {verb} not match the policy's mx patterns"
    if policy.mode is not Mode.ENFORCE:
        log.warning("%s (testing mode: delivering anyway)", reason)
        return found, None
    kept = tuple(d for d in found.destinations if policy.allows(d.host))
    if kept:
        log.info("%s (skipped)", reason)
        return dataclasses.replace(found, destinations=kept), None
    # A deferral, never a bounce: the policy or the MX records may be fixed
    # before max_lifetime (RFC 8461 §5: "MUST NOT deliver", not "reject").
    return found, Reply(451, "4.7.0", reason)
