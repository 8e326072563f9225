"""The directory: which domains are local, who the users are, where aliases point.

It answers the two questions asked on every SMTP transaction — "does this
recipient exist, and where does its mail go?" (:meth:`Directory.resolve`,
once per RCPT) and "may this authenticated user use this sender address?"
(:meth:`Directory.may_send_as`) — and checks passwords for SMTP AUTH, IMAP
and POP3 (:meth:`Directory.authenticate`).

Addresses are stored in the canonical form of :mod:`mailstead.addresses`, so
``Alice@Bücher.example`` and ``"alice"@xn--bcher-kva.example`` are one user.
A local part that becomes a directory name on disk must be harmless there and
in a shell; :func:`mailstead.addresses.is_valid_mailbox_local_part` is the
rule. Passwords are kept as scrypt hashes (:mod:`mailstead.passwords`).

The rows live in SQLite or, with ``[storage] backend = "postgresql"``, in the
cluster's database (:mod:`mailstead.directory_db`: one set of queries here,
the schema and the write exclusion per engine there). The local domains are
not rows: they come from the config file, which every node shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mailstead.addresses import (
    AddressError,
    canonical_local_part,
    is_valid_mailbox_local_part,
    is_valid_remote_local_part,
    normalize_domain,
    split_address,
)
from mailstead.directory_db import (
    DirectoryDB,
    DirectoryError,
    DirectorySettings,
    PostgresDirectoryDB,
    SQLiteDirectoryDB,
)
from mailstead.password_cache import PasswordCache
from mailstead.passwords import DUMMY_HASH, hash_password, verify_password
from mailstead.pgsql.connect import DatabaseUnavailable, redact, shared_pool
from mailstead.sqlconn import SQLConnection

__all__ = [
    "AliasWarning",
    "Directory",
    "DirectoryError",
    "Quota",
    "Resolution",
    "is_valid_mailbox_local_part",
    "open_directory",
    "prepare_directory",
]

# Alias expansion: nesting deeper than this is ignored (Postfix stops at 1000
# recursions, but ten levels of aliases is already a misconfiguration).
MAX_ALIAS_DEPTH = 10
# Targets of one alias; a mailing list belongs in a list manager, not here.
MAX_ALIAS_TARGETS = 1000


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail for one recipient address goes."""

    #: Canonical addresses of local users whose mailboxes get a copy.
    mailboxes: tuple[str, ...]
    #: Non-local addresses the message is relayed to (alias forwarding).
    remote: tuple[str, ...]
    #: Each mailbox's limits, read in the same lookup, so the quota checks
    #: at RCPT and DATA ask the directory nothing more (a round trip each
    #: on the cluster database). Mailboxes without limits are left out.
    quotas: tuple[tuple[str, Quota], ...] = ()

    def quota_of(self, mailbox: str) -> Quota:
        """The limits of one of :attr:`mailboxes` as they were at the lookup."""
        return dict(self.quotas).get(mailbox, Quota())


@dataclass(frozen=True, slots=True)
class Quota:
    """A user's limits (``mailstead user quota``); None: no limit on that resource."""

    storage: int | None = None  # octets
    messages: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.storage is None and self.messages is None


@dataclass(frozen=True, slots=True)
class AliasWarning:
    """Something wrong with an alias that does not stop it being stored: mail to it
    is lost (refused, or copies that go nowhere)."""

    alias: str
    text: str


class Directory:
    """Owns the local domains, the users (with password hashes) and the aliases.

    Backed by a SQLite file (``db`` a path) or the cluster's PostgreSQL
    database (``db`` a :class:`~mailstead.directory_db.PostgresDirectoryDB`;
    see :func:`open_directory`). Every lookup reads the database, so a change
    made by the CLI or on another node is seen at the next RCPT or login (the
    optional :class:`PasswordCache` only spares the hash computation for a
    password that matched the same stored hash before). Password hashing
    runs outside any lock or transaction, so that logins do not serialise.
    """

    def __init__(
        self,
        db: Path | DirectoryDB,
        domains: Sequence[str],
        *,
        password_cache: PasswordCache | None = None,
    ) -> None:
        try:
            self._domains = frozenset(normalize_domain(d) for d in domains)
        except AddressError as exc:
            raise DirectoryError(str(exc)) from None
        self._path = db if isinstance(db, Path) else None
        self._password_cache = password_cache
        self._db: DirectoryDB = SQLiteDirectoryDB(db) if isinstance(db, Path) else db

    def close(self) -> None:
        """Close the database connection (a shared pool stays open for the others)."""
        self._db.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------------- helpers

    def _domain(self, domain: str) -> str | None:
        """The normalised ``domain`` if it is local, else None."""
        try:
            name = normalize_domain(domain)
        except AddressError:
            return None
        return name if name in self._domains else None

    def _local_address(self, address: str, what: str) -> str:
        """Canonical form of an address in a local domain, or DirectoryError."""
        try:
            local, domain = split_address(address)
            name = normalize_domain(domain)
            if not local:
                raise AddressError(address)
        except AddressError:
            raise DirectoryError(f"{what} {address!r} is not an address") from None
        if name not in self._domains:
            raise DirectoryError(f"{what} {address!r}: {name} is not a local domain")
        canonical = canonical_local_part(local)
        if not is_valid_mailbox_local_part(canonical):
            raise DirectoryError(
                f"{what} {address!r}: local part may contain only letters, digits, "
                "+ - = _ and single dots inside"
            )
        return f"{canonical}@{name}"

    def _alias_key(self, alias: str) -> str:
        if alias.startswith("@"):
            domain = self._domain(alias[1:])
            if domain is None:
                raise DirectoryError(f"alias {alias!r}: not a local domain")
            return f"@{domain}"
        return self._local_address(alias, "alias")

    def _target(self, target: str) -> str:
        """``target`` as stored: local part as given, domain normalised."""
        try:
            local, domain = split_address(target)
            if not local or domain.startswith("["):
                raise AddressError(target)  # literals would bypass MX routing
            name = normalize_domain(domain)
        except AddressError:
            raise DirectoryError(f"alias target {target!r} is not an address") from None
        if name in self._domains:
            return self._local_address(target, "alias target")
        if not is_valid_remote_local_part(local):
            raise DirectoryError(f"alias target {target!r} has an invalid local part")
        return f"{local}@{name}"

    @staticmethod
    def _user_exists(db: SQLConnection, address: str) -> bool:
        row = db.execute("SELECT 1 FROM users WHERE address = ?", (address,)).fetchone()
        return row is not None

    @staticmethod
    def _user_quota(db: SQLConnection, address: str) -> Quota | None:
        """The user's limits (one query), or None if there is no such user."""
        row = db.execute(
            "SELECT q.storage, q.messages FROM users u"
            " LEFT JOIN quotas q ON q.address = u.address WHERE u.address = ?",
            (address,),
        ).fetchone()
        return None if row is None else Quota(*row)

    @staticmethod
    def _alias_targets(db: SQLConnection, alias: str) -> list[str]:
        rows = db.execute(
            "SELECT target FROM alias_targets WHERE alias = ? ORDER BY position", (alias,)
        )
        return [target for (target,) in rows]

    @staticmethod
    def _check_password(password: str) -> None:
        if not password:
            raise DirectoryError("empty password")
        # SASL PLAIN (RFC 4616 §2) separates fields with NUL, and the line-based
        # protocols end at CR LF: such a password could never be used to log in.
        if any(c in password for c in "\0\r\n"):
            raise DirectoryError("password contains NUL, CR or LF")

    # ----------------------------------------------------------------------- domains

    def is_local_domain(self, domain: str) -> bool:
        """True if mail for ``domain`` (any case, U-label or A-label form) is ours."""
        return self._domain(domain) is not None

    # ----------------------------------------------------------------------- users

    def add_user(self, address: str, password: str) -> str:
        """Create a user with ``password``; returns its canonical address."""
        key = self._local_address(address, "user")
        self._check_password(password)
        encoded = hash_password(password)  # outside the lock: ~50 ms of CPU
        with self._db.write() as db:
            if self._user_exists(db, key):
                raise DirectoryError(f"user {key} already exists")
            if self._alias_targets(db, key):
                raise DirectoryError(f"{key} is an alias; delete it first")
            db.execute(
                "INSERT INTO users (address, domain, password) VALUES (?, ?, ?)",
                (key, key.rpartition("@")[2], encoded),
            )
        return key

    def set_password(self, address: str, password: str) -> None:
        """Replace the password of an existing user."""
        key = self._local_address(address, "user")
        self._check_password(password)
        encoded = hash_password(password)
        with self._db.write() as db:
            cur = db.execute("UPDATE users SET password = ? WHERE address = ?", (encoded, key))
            if cur.rowcount == 0:
                raise DirectoryError(f"no such user {key}")

    def delete_user(self, address: str) -> None:
        """Remove a user (its stored mail is left on disk)."""
        key = self._local_address(address, "user")
        with self._db.write() as db:
            if db.execute("DELETE FROM users WHERE address = ?", (key,)).rowcount == 0:
                raise DirectoryError(f"no such user {key}")
            db.execute("DELETE FROM quotas WHERE address = ?", (key,))

    def users(self) -> list[str]:
        """Canonical addresses of all users, sorted."""
        with self._db.read() as db:
            return [a for (a,) in db.execute("SELECT address FROM users ORDER BY address")]

    def authenticate(self, username: str, password: str) -> str | None:
        """The canonical address if ``username``/``password`` are right, else None.

        Costs one scrypt computation whether or not the user exists, unless
        the password cache vouches for this very password and stored hash.
        CPU-bound (~50 ms): call it from a thread, not the event loop.
        """
        encoded, key = DUMMY_HASH, self._recipient_key(username)
        row = None
        if key is not None:
            with self._db.read() as db:
                row = db.execute("SELECT password FROM users WHERE address = ?", (key,)).fetchone()
            if row is not None:
                encoded = row[0]
        if key is None or row is None:
            verify_password(password, encoded)  # the same cost as a wrong password
            return None
        cache = self._password_cache
        if cache is not None and cache.verified(key, encoded, password):
            return key
        if not verify_password(password, encoded):
            return None
        if cache is not None:
            cache.remember(key, encoded, password)
        return key

    # ----------------------------------------------------------------------- quotas

    def set_quota(self, address: str, quota: Quota) -> str:
        """Set (or, with an unlimited ``quota``, clear) a user's limits; the canonical address."""
        key = self._local_address(address, "user")
        for value in (quota.storage, quota.messages):
            if value is not None and value < 0:
                raise DirectoryError("a quota limit cannot be negative")
        with self._db.write() as db:
            if not self._user_exists(db, key):
                raise DirectoryError(f"no such user {key}")
            if quota.unlimited:
                db.execute("DELETE FROM quotas WHERE address = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO quotas (address, storage, messages) VALUES (?, ?, ?)"
                    " ON CONFLICT (address) DO UPDATE"
                    " SET storage = excluded.storage, messages = excluded.messages",
                    (key, quota.storage, quota.messages),
                )
        return key

    def quota(self, address: str) -> Quota:
        """The limits of the canonical ``address`` (no limits for an unknown one).

        Read at each use (every RCPT, APPEND, COPY), like everything here.
        """
        with self._db.read() as db:
            row = db.execute(
                "SELECT storage, messages FROM quotas WHERE address = ?", (address,)
            ).fetchone()
        return Quota(*row) if row else Quota()

    # ----------------------------------------------------------------------- aliases

    def add_alias(self, alias: str, targets: Sequence[str]) -> str:
        """Make ``alias`` deliver to ``targets`` (in order, duplicates dropped); returns
        its canonical key (``local@domain`` or ``@domain``).

        ``alias`` is an address in a local domain, or ``@domain`` for that
        domain's catch-all (used when neither a user nor an alias matches).
        Targets are local or remote addresses. If the alias exists, its
        targets are *replaced*, not extended.
        """
        key = self._alias_key(alias)
        stored: list[str] = []
        for target in targets:
            t = self._target(target)
            if t not in stored:
                stored.append(t)
        if not stored:
            raise DirectoryError(f"alias {alias!r}: at least one target is required")
        if len(stored) > MAX_ALIAS_TARGETS:
            raise DirectoryError(f"alias {alias!r}: more than {MAX_ALIAS_TARGETS} targets")
        with self._db.write() as db:
            if self._user_exists(db, key):
                raise DirectoryError(f"{key} is a user; an alias would never be used")
            db.execute("DELETE FROM alias_targets WHERE alias = ?", (key,))
            db.executemany(
                "INSERT INTO alias_targets (alias, position, target) VALUES (?, ?, ?)",
                [(key, i, t) for i, t in enumerate(stored)],
            )
        return key

    def delete_alias(self, alias: str) -> None:
        """Remove ``alias`` and all its targets."""
        key = self._alias_key(alias)
        with self._db.write() as db:
            if db.execute("DELETE FROM alias_targets WHERE alias = ?", (key,)).rowcount == 0:
                raise DirectoryError(f"no such alias {key}")

    def aliases(self) -> list[tuple[str, list[str]]]:
        """Every alias with its targets in order, sorted by alias."""
        out: dict[str, list[str]] = {}
        with self._db.read() as db:
            rows = db.execute("SELECT alias, target FROM alias_targets ORDER BY alias, position")
            for alias, target in rows:
                out.setdefault(alias, []).append(target)
        return list(out.items())

    def aliases_targeting(self, address: str) -> list[str]:
        """The aliases that list the local ``address`` (any spelling) among their targets."""
        key = self._recipient_key(address)
        if key is None:
            return []
        return [a for a, targets in self.aliases() if key in map(self._target_key, targets)]

    def _target_key(self, target: str) -> str:
        local, _, domain = target.rpartition("@")
        return f"{canonical_local_part(local)}@{domain}"

    def alias_warnings(self, only: Sequence[str] | None = None) -> list[AliasWarning]:
        """What is wrong with the aliases ``only`` (canonical keys; all by default).

        A local target that is neither a user nor an alias reaches no one; a
        chain of aliases that comes back to the alias is a loop (delivery
        stops it, see :meth:`resolve`, but it is never what was meant); an
        alias whose expansion finds no mailbox and no remote address makes
        every RCPT to it fail. Remote targets are not checked: only their
        own server knows them.
        """
        table = dict(self.aliases())
        out: list[AliasWarning] = []
        with self._db.read() as db:
            for alias in sorted(table if only is None else set(only) & table.keys()):
                for target in table[alias]:
                    key = self._target_key(target)
                    domain = key.rpartition("@")[2]
                    local = domain in self._domains
                    if local and key not in table and not self._user_exists(db, key):
                        out.append(
                            AliasWarning(
                                alias, f"target {target} reaches no one (no such user or alias)"
                            )
                        )
                loop = self._loop(db, alias, table)
                if loop:
                    out.append(AliasWarning(alias, "loop: " + " -> ".join(loop)))
                mailboxes: dict[str, Quota] = {}
                remote: dict[str, None] = {}
                self._expand(db, table[alias], 1, {alias}, mailboxes, remote)
                if not mailboxes and not remote:
                    out.append(AliasWarning(alias, "delivers to no one: mail to it is refused"))
        return out

    def _loop(self, db: SQLConnection, alias: str, table: dict[str, list[str]]) -> list[str]:
        """The shortest chain of aliases from ``alias`` back to itself, or []."""
        parents: dict[str, str] = {}
        frontier = [alias]
        while frontier:  # breadth first: each alias is visited once
            following = []
            for current in frontier:
                for target in table.get(current, ()):
                    key = self._target_key(target)
                    if key == alias:
                        chain = [current]
                        while chain[-1] != alias:
                            chain.append(parents[chain[-1]])
                        return [*reversed(chain), alias]
                    if key in table and key not in parents and not self._user_exists(db, key):
                        parents[key] = current
                        following.append(key)
            frontier = following
        return []

    # ----------------------------------------------------------------------- routing

    def resolve(self, address: str) -> Resolution | None:
        """Where mail for ``address`` goes, or None if nobody here takes it.

        For a local domain: an exact user wins, then an exact alias, then the
        domain's catch-all. Alias targets are expanded recursively (a target
        names a user or another exact alias; catch-alls are not applied to
        targets), at most :data:`MAX_ALIAS_DEPTH` levels, each alias once, so
        loops end; duplicates are dropped, order is kept. An alias whose
        targets all name nobody resolves to None too. Never raises on bad
        input: a malformed or hostile address simply matches nothing.
        """
        key = self._recipient_key(address)
        if key is None:
            return None
        with self._db.read() as db:
            return self._route(db, key)

    def _recipient_key(self, address: str) -> str | None:
        """Canonical ``local@domain`` if the domain is local and the local part valid."""
        try:
            local, domain = split_address(address)
            name = normalize_domain(domain)
        except AddressError:
            return None
        if name not in self._domains:
            return None
        local = canonical_local_part(local)
        if not is_valid_mailbox_local_part(local):
            return None
        return f"{local}@{name}"

    def _route(self, db: SQLConnection, key: str) -> Resolution | None:
        """:meth:`resolve` for a canonical local address, on ``db``."""
        quota = self._user_quota(db, key)
        if quota is not None:
            limits = () if quota.unlimited else ((key, quota),)
            return Resolution(mailboxes=(key,), remote=(), quotas=limits)
        mailboxes: dict[str, Quota] = {}  # dicts keep insertion order: ordered sets
        remote: dict[str, None] = {}
        for alias in (key, "@" + key.rpartition("@")[2]):
            targets = self._alias_targets(db, alias)
            if targets:
                self._expand(db, targets, 1, {alias}, mailboxes, remote)
                break
        if not mailboxes and not remote:
            return None
        return Resolution(
            mailboxes=tuple(mailboxes),
            remote=tuple(remote),
            quotas=tuple((m, q) for m, q in mailboxes.items() if not q.unlimited),
        )

    def _expand(
        self,
        db: SQLConnection,
        targets: list[str],
        depth: int,
        seen: set[str],
        mailboxes: dict[str, Quota],
        remote: dict[str, None],
    ) -> None:
        for target in targets:
            local, _, domain = target.rpartition("@")
            if domain not in self._domains:
                remote[target] = None
                continue
            key = f"{canonical_local_part(local)}@{domain}"
            quota = self._user_quota(db, key)
            if quota is not None:
                mailboxes[key] = quota
            elif key not in seen and depth < MAX_ALIAS_DEPTH:
                seen.add(key)  # each alias expands once: ends loops, bounds the work
                nested = self._alias_targets(db, key)
                if nested:
                    self._expand(db, nested, depth + 1, seen, mailboxes, remote)

    def may_send_as(self, user: str, address: str) -> bool:
        """True if the authenticated ``user`` may use ``address`` as sender.

        Allowed: the user's own address (any equivalent spelling), or an exact
        alias (not a catch-all) whose expansion delivers to that user.
        """
        key = self._recipient_key(address)
        try:
            u_local, u_domain = split_address(user)
            user_key = f"{canonical_local_part(u_local)}@{normalize_domain(u_domain)}"
        except AddressError:
            return False
        if key is None:
            return False
        if key == user_key:
            return True
        with self._db.read() as db:
            if not self._alias_targets(db, key):
                return False  # a catch-all does not make every address the user's
            resolution = self._route(db, key)
        return resolution is not None and user_key in resolution.mailboxes


# --------------------------------------------------------------------------- opening


def open_directory(
    config: DirectorySettings, password_cache: PasswordCache | None = None
) -> Directory:
    """The directory of ``config``: ``<data_dir>/directory.sqlite3``, or with ``[storage]
    backend = "postgresql"`` the shared database's tables (created or upgraded here)."""
    if config.storage.backend != "postgresql":
        path = config.db_path("directory")
        return Directory(path, config.domains, password_cache=password_cache)
    dsn = config.storage.dsn
    try:
        pool = shared_pool(dsn)
    except DatabaseUnavailable as exc:
        raise DirectoryError(str(exc)) from None
    db = PostgresDirectoryDB(pool, name=redact(dsn))
    return Directory(db, config.domains, password_cache=password_cache)


def prepare_directory(config: DirectorySettings) -> str | None:
    """Create the directory's storage if it is not there (``mailstead init``); what was
    created, for the operator, or None when it existed already."""
    if config.storage.backend != "postgresql":
        path = config.db_path("directory")
        if path.exists():
            return None
        open_directory(config).close()
        return f"user directory {path}"
    directory = open_directory(config)
    directory.close()
    db = directory._db
    if isinstance(db, PostgresDirectoryDB) and db.steps_run:
        return f"user directory tables in {db.name}"
    return None
