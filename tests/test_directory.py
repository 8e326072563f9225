"""The directory: local domains, users, passwords, aliases and recipient routing.

One contract, run on both backends: a SQLite file (the embedded default) and
the cluster's PostgreSQL database. ``node()`` opens one more Directory on the
same database, as another worker process or another node would.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstead import passwords as passwords_module
from mailstead.config import load_config
from mailstead.directory import (
    Directory,
    DirectoryError,
    Quota,
    Resolution,
    open_directory,
    prepare_directory,
)
from mailstead.directory_db import PostgresDirectoryDB
from mailstead.pgsql.connect import Pool, connect, open_pool, redact
from mailstead.testing.postgres import TemporaryPostgres

DOMAINS = ["example.test", "Bücher.example"]

Node = Callable[[], Directory]


@pytest.fixture(scope="module")
def pg_module_dsn(postgres: TemporaryPostgres) -> str:
    """One database for this module's tests; each starts from an empty schema in it."""
    return postgres.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def node(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Node]:
    # Cheap scrypt for speed; verification reads the cost from each hash.
    monkeypatch.setattr(passwords_module, "_SCRYPT_LN", 4)
    opened: list[Directory] = []
    pools: list[Pool] = []
    if request.param == "sqlite":

        def open_node() -> Directory:
            opened.append(Directory(tmp_path / "directory.sqlite3", DOMAINS))
            return opened[-1]

    else:
        dsn: str = request.getfixturevalue("pg_module_dsn")
        with connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")

        def open_node() -> Directory:
            pools.append(open_pool(dsn, max_size=4))  # a node: a process with its own pool
            opened.append(Directory(PostgresDirectoryDB(pools[-1], name="test"), DOMAINS))
            return opened[-1]

    yield open_node
    for directory in opened:
        directory.close()
    for pool in pools:
        pool.close()


@pytest.fixture
def d(node: Node) -> Directory:
    return node()


def stored_passwords(d: Directory) -> list[str]:
    with d._db.read() as db:
        return [p for (p,) in db.execute("SELECT password FROM users ORDER BY address")]


def only(*mailboxes: str, remote: tuple[str, ...] = ()) -> Resolution:
    return Resolution(mailboxes=mailboxes, remote=remote)


# ----------------------------------------------------------------------------- domains


@pytest.mark.parametrize(
    "domain",
    ["example.test", "EXAMPLE.Test", "example.test.", "bücher.example", "xn--bcher-kva.example"],
)
def test_local_domains_in_any_spelling(d: Directory, domain: str) -> None:
    assert d.is_local_domain(domain)


@pytest.mark.parametrize(
    "domain", ["other.test", "sub.example.test", "", "exa mple.test", "[127.0.0.1]"]
)
def test_other_domains_are_not_local(d: Directory, domain: str) -> None:
    assert not d.is_local_domain(domain)


# ----------------------------------------------------------------------------- users


def test_add_user_returns_the_canonical_address(d: Directory) -> None:
    assert d.add_user("Alice@BÜCHER.example", "pw") == "alice@xn--bcher-kva.example"
    assert d.users() == ["alice@xn--bcher-kva.example"]


@pytest.mark.parametrize(
    "spelling",
    ["alice@example.test", "ALICE@example.test", '"alice"@example.test', '"Alice"@EXAMPLE.TEST.'],
)
def test_users_are_case_insensitive_and_quoting_blind(d: Directory, spelling: str) -> None:
    d.add_user("Alice@example.test", "pw")
    assert d.resolve(spelling) == only("alice@example.test")
    assert d.authenticate(spelling, "pw") == "alice@example.test"
    with pytest.raises(DirectoryError, match="already exists"):
        d.add_user(spelling, "pw")


def test_users_are_listed_sorted(d: Directory) -> None:
    for address in ["carol@example.test", "alice@example.test", "bob@bücher.example"]:
        d.add_user(address, "pw")
    assert d.users() == ["alice@example.test", "bob@xn--bcher-kva.example", "carol@example.test"]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("alice@other.test", "other.test is not a local domain"),
        ("alice", "is not an address"),
        ("@example.test", "is not an address"),
        ("../../x@example.test", "local part"),
        ("alice/../bob@example.test", "local part"),
        ("a\0b@example.test", "local part"),
        ("a;rm -rf@example.test", "local part"),
        ("$(x)@example.test", "local part"),
        ("`id`@example.test", "local part"),
        ("a|b@example.test", "local part"),
        ("a&b@example.test", "local part"),
        ("a*@example.test", "local part"),
        ("~root@example.test", "local part"),
        ("a%b@example.test", "local part"),
        (".alice@example.test", "local part"),
        ("alice.@example.test", "local part"),
        ("al..ice@example.test", "local part"),
        ('"a b"@example.test', "local part"),
        ("a\nb@example.test", "local part"),
        ("x" * 65 + "@example.test", "local part"),
    ],
)
def test_add_user_refuses(d: Directory, address: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=re.escape(message)) as info:
        d.add_user(address, "pw")
    assert "\n" not in str(info.value)
    assert d.users() == []


@pytest.mark.parametrize("local", ["alice", "a.b", "a+tag", "first_last", "a-b=c", "jörg", "李"])
def test_add_user_accepts(d: Directory, local: str) -> None:
    assert d.add_user(f"{local}@example.test", "pw") == f"{local}@example.test"


@pytest.mark.parametrize("password", ["", "a\0b", "a\nb", "a\rb"])
def test_unusable_passwords_are_refused(d: Directory, password: str) -> None:
    with pytest.raises(DirectoryError):
        d.add_user("alice@example.test", password)


def test_delete_user(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.delete_user("ALICE@example.test")
    assert d.users() == []
    assert d.resolve("alice@example.test") is None
    with pytest.raises(DirectoryError, match=r"no such user alice@example\.test"):
        d.delete_user("alice@example.test")


# ----------------------------------------------------------------------------- passwords


def test_authenticate(d: Directory) -> None:
    d.add_user("alice@example.test", "correct horse")
    assert d.authenticate("alice@example.test", "correct horse") == "alice@example.test"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice@example.test", "wrong"),
        ("alice@example.test", ""),
        ("alice@example.test", "Correct horse"),
        ("nobody@example.test", "correct horse"),
        ("alice@other.test", "correct horse"),
        ("alice", "correct horse"),
        ("../alice@example.test", "correct horse"),
    ],
)
def test_authenticate_fails(d: Directory, username: str, password: str) -> None:
    d.add_user("alice@example.test", "correct horse")
    assert d.authenticate(username, password) is None


def test_unknown_user_costs_one_scrypt(d: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = passwords_module._scrypt

    def counting(password: bytes, salt: bytes, ln: int, r: int, p: int) -> bytes:
        calls.append(password)
        return real(password, salt, 4, r, p)  # same call, cheaper

    monkeypatch.setattr(passwords_module, "_scrypt", counting)
    assert d.authenticate("nobody@example.test", "pw") is None
    assert d.authenticate("not-an-address", "pw") is None
    assert calls == [b"pw", b"pw"]


def test_set_password(d: Directory) -> None:
    d.add_user("alice@example.test", "old")
    d.set_password("Alice@example.test", "new")
    assert d.authenticate("alice@example.test", "old") is None
    assert d.authenticate("alice@example.test", "new") == "alice@example.test"
    with pytest.raises(DirectoryError, match="no such user"):
        d.set_password("bob@example.test", "x")


def test_stored_hash_is_self_describing_scrypt_without_the_password(tmp_path: Path) -> None:
    with Directory(tmp_path / "dir.sqlite3", DOMAINS) as d:  # real cost parameters
        d.add_user("alice@example.test", "hunter2-secret")
        (stored,) = stored_passwords(d)
    assert re.fullmatch(r"\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", stored)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"hunter2-secret" not in raw


def test_same_password_gets_different_salts(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@example.test", "pw")
    a, b = stored_passwords(d)
    assert a != b


def test_database_file_is_private(tmp_path: Path) -> None:
    Directory(tmp_path / "dir.sqlite3", DOMAINS).close()
    assert os.stat(tmp_path / "dir.sqlite3").st_mode & 0o077 == 0


# ----------------------------------------------------------------------------- aliases


def test_alias_fans_out_to_local_and_remote(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@bücher.example", "pw")
    d.add_alias(
        "Team@example.test",
        ["alice@example.test", "BOB@xn--bcher-kva.example", "Carol@Remote.Test"],
    )
    assert d.resolve("team@EXAMPLE.test") == only(
        "alice@example.test", "bob@xn--bcher-kva.example", remote=("Carol@remote.test",)
    )


def test_remote_targets_keep_their_local_part_case(d: Directory) -> None:
    # RFC 5321 §2.4: only the destination host may treat the local part case-insensitively.
    d.add_alias("fwd@example.test", ["John.Smith@remote.test"])
    assert d.resolve("fwd@example.test") == only(remote=("John.Smith@remote.test",))


def test_exact_user_beats_alias_beats_catch_all(d: Directory) -> None:
    for user in ["alice", "bob", "postmaster"]:
        d.add_user(f"{user}@example.test", "pw")
    d.add_alias("sales@example.test", ["bob@example.test"])
    d.add_alias("@example.test", ["postmaster@example.test"])
    assert d.resolve("alice@example.test") == only("alice@example.test")
    assert d.resolve("sales@example.test") == only("bob@example.test")
    assert d.resolve("anything@example.test") == only("postmaster@example.test")
    assert d.resolve("anything@bücher.example") is None  # the catch-all is per domain


def test_catch_all_in_idn_domain(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.add_alias("@Bücher.example", ["alice@example.test"])
    assert d.aliases() == [("@xn--bcher-kva.example", ["alice@example.test"])]
    assert d.resolve("whoever@xn--bcher-kva.example") == only("alice@example.test")


def test_aliases_expand_recursively_without_duplicates(d: Directory) -> None:
    for user in ["alice", "bob", "carol"]:
        d.add_user(f"{user}@example.test", "pw")
    d.add_alias("all@example.test", ["dev@example.test", "ops@example.test", "alice@example.test"])
    d.add_alias("dev@example.test", ["alice@example.test", "bob@example.test"])
    d.add_alias("ops@example.test", ["bob@example.test", "carol@example.test", "x@remote.test"])
    assert d.resolve("all@example.test") == only(
        "alice@example.test", "bob@example.test", "carol@example.test", remote=("x@remote.test",)
    )


def test_alias_loops_end(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.add_alias("a@example.test", ["b@example.test"])
    d.add_alias("b@example.test", ["a@example.test", "alice@example.test"])
    d.add_alias("self@example.test", ["self@example.test"])
    assert d.resolve("a@example.test") == only("alice@example.test")
    assert d.resolve("b@example.test") == only("alice@example.test")
    assert d.resolve("self@example.test") is None


def test_alias_depth_is_limited(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    chain = [f"l{i}@example.test" for i in range(12)]
    for here, there in itertools.pairwise(chain):
        d.add_alias(here, [there])
    d.add_alias(chain[-1], ["alice@example.test"])
    assert d.resolve(chain[-1]) == only("alice@example.test")
    assert d.resolve(chain[-10]) == only("alice@example.test")  # 10 levels: followed
    assert d.resolve(chain[0]) is None  # 12 levels: too deep


def test_alias_targets_naming_nobody_resolve_to_none(d: Directory) -> None:
    d.add_alias("ghost@example.test", ["nobody@example.test"])
    assert d.resolve("ghost@example.test") is None


def test_adding_an_existing_alias_replaces_its_targets(d: Directory) -> None:
    d.add_alias("fwd@example.test", ["a@remote.test", "b@remote.test"])
    d.add_alias("FWD@example.test", ["c@remote.test", "c@remote.test"])
    assert d.aliases() == [("fwd@example.test", ["c@remote.test"])]


def test_alias_and_user_cannot_shadow_each_other(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    with pytest.raises(DirectoryError, match="is a user"):
        d.add_alias("alice@example.test", ["x@remote.test"])
    d.add_alias("bob@example.test", ["x@remote.test"])
    with pytest.raises(DirectoryError, match="is an alias"):
        d.add_user("bob@example.test", "pw")


@pytest.mark.parametrize(
    ("alias", "targets", "message"),
    [
        ("x@other.test", ["a@remote.test"], "not a local domain"),
        ("@other.test", ["a@remote.test"], "not a local domain"),
        ("../x@example.test", ["a@remote.test"], "local part"),
        ("x@example.test", [], "at least one target"),
        ("x@example.test", ["nobody"], "is not an address"),
        ("x@example.test", ["@remote.test"], "is not an address"),
        ("x@example.test", ["a@[127.0.0.1]"], "is not an address"),
        ("x@example.test", ["$(x)@example.test"], "local part"),
        ("x@example.test", ["a b@remote.test"], "invalid local part"),
        ("x@example.test", ["a\r\nRCPT TO:<v@x>@remote.test"], "invalid local part"),
        ("x@example.test", ['"a"b"@remote.test'], "invalid local part"),
        ("x@example.test", ["a..b@remote.test"], "invalid local part"),
    ],
)
def test_add_alias_refuses(d: Directory, alias: str, targets: list[str], message: str) -> None:
    with pytest.raises(DirectoryError, match=re.escape(message)) as info:
        d.add_alias(alias, targets)
    assert "\n" not in str(info.value)
    assert d.aliases() == []


def test_delete_alias(d: Directory) -> None:
    d.add_alias("@example.test", ["a@remote.test"])
    d.delete_alias("@EXAMPLE.test")
    assert d.aliases() == []
    with pytest.raises(DirectoryError, match="no such alias"):
        d.delete_alias("@example.test")


# ----------------------------------------------------------------------------- resolve


@pytest.mark.parametrize(
    "address",
    [
        "../../x@example.test",
        "alice/../bob@example.test",
        "a\0b@example.test",
        "a;rm -rf@example.test",
        "$(x)@example.test",
        ".alice@example.test",
        "alice@",
        "alice",
        "",
        "@example.test",
        "alice@exa mple.test",
        "alice@other.test",
        "x" * 10_000 + "@example.test",
    ],
)
def test_hostile_or_foreign_recipients_resolve_to_none(
    d: Directory, tmp_path: Path, address: str
) -> None:
    d.add_alias("@example.test", ["catchall@remote.test"])  # even a catch-all does not take them
    before = sorted(tmp_path.iterdir())
    assert d.resolve(address) is None
    assert sorted(tmp_path.iterdir()) == before


def test_changes_are_seen_without_reopening(node: Node) -> None:
    # Two workers, or two nodes of a cluster: a change on one is seen by the
    # other at its next lookup.
    server, cli = node(), node()
    assert server.resolve("alice@example.test") is None
    cli.add_user("alice@example.test", "pw")
    assert server.resolve("alice@example.test") == only("alice@example.test")
    assert server.authenticate("Alice@example.test", "pw") == "alice@example.test"
    cli.add_alias("sales@example.test", ["alice@example.test", "x@remote.test"])
    assert server.resolve("sales@example.test") == only(
        "alice@example.test", remote=("x@remote.test",)
    )
    cli.set_password("alice@example.test", "new")
    assert server.authenticate("alice@example.test", "pw") is None
    cli.set_quota("alice@example.test", Quota(messages=3))
    assert server.quota("alice@example.test") == Quota(messages=3)
    cli.delete_user("alice@example.test")
    assert server.authenticate("alice@example.test", "new") is None


def race(*jobs: Callable[[], object]) -> list[str]:
    """Run ``jobs`` at once, one thread each: "ok" or the DirectoryError's text, in order."""
    barrier = threading.Barrier(len(jobs))
    outcomes = [""] * len(jobs)

    def run(i: int) -> None:
        barrier.wait()
        try:
            jobs[i]()
            outcomes[i] = "ok"
        except DirectoryError as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_two_nodes_adding_the_same_user_at_once_one_wins(node: Node) -> None:
    one, two = node(), node()
    for n in range(5):
        address = f"user{n}@example.test"
        outcomes = race(
            lambda a=address: one.add_user(a, "from one"),  # type: ignore[misc]
            lambda a=address: two.add_user(a, "from two"),  # type: ignore[misc]
        )
        assert sorted(outcomes) == ["ok", f"user {address} already exists"]
        winner = "from one" if outcomes[0] == "ok" else "from two"
        assert two.authenticate(address, winner) == one.authenticate(address, winner) == address
    assert one.users() == two.users() == [f"user{n}@example.test" for n in range(5)]


def test_a_user_and_an_alias_of_one_address_at_once_one_wins(node: Node) -> None:
    one, two = node(), node()
    outcomes = race(
        lambda: one.add_user("sales@example.test", "pw"),
        lambda: two.add_alias("sales@example.test", ["x@remote.test"]),
    )
    if outcomes[0] == "ok":
        assert outcomes[1] == "sales@example.test is a user; an alias would never be used"
        assert two.aliases() == []
    else:
        assert outcomes == ["sales@example.test is an alias; delete it first", "ok"]
        assert one.users() == []


def test_concurrent_resolves_from_threads(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                assert d.resolve("Alice@example.test") == only("alice@example.test")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_schema_version_is_recorded_and_newer_refused(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite3"
    with Directory(path, DOMAINS) as d, d._db.write() as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(DirectoryError, match="schema version 99"):
        Directory(path, DOMAINS)


def test_a_newer_cluster_schema_is_refused(pg_dsn: str) -> None:
    pool = open_pool(pg_dsn)
    try:
        Directory(PostgresDirectoryDB(pool, name="db"), DOMAINS).close()
        with pool.connection() as conn:
            conn.execute("UPDATE mailstead_schema SET version = 99 WHERE component = 'directory'")
        with pytest.raises(DirectoryError, match="directory tables are at version 99"):
            PostgresDirectoryDB(pool, name="db")
    finally:
        pool.close()


# ----------------------------------------------------------------------------- may_send_as


def test_may_send_as(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@example.test", "pw")
    d.add_alias("sales@example.test", ["team@example.test"])
    d.add_alias("team@example.test", ["alice@example.test", "x@remote.test"])
    d.add_alias("@example.test", ["alice@example.test"])
    assert d.may_send_as("alice@example.test", '"Alice"@EXAMPLE.test')
    assert d.may_send_as("alice@example.test", "sales@example.test")  # via nested alias
    assert d.may_send_as("alice@example.test", "team@example.test")
    assert not d.may_send_as("bob@example.test", "sales@example.test")
    assert not d.may_send_as("alice@example.test", "bob@example.test")
    assert not d.may_send_as("alice@example.test", "random@example.test")  # catch-all: no
    assert not d.may_send_as("alice@example.test", "alice@remote.test")
    assert not d.may_send_as("alice@example.test", "not an address")


# ----------------------------------------------------------------------------- quotas


def test_quota_set_read_and_cleared(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    assert d.quota("alice@example.test") == Quota()
    assert d.set_quota("Alice@Example.TEST", Quota(storage=1000, messages=None)) == (
        "alice@example.test"
    )
    assert d.quota("alice@example.test") == Quota(storage=1000)
    d.set_quota("alice@example.test", Quota(storage=1000, messages=5))
    assert d.quota("alice@example.test") == Quota(1000, 5)
    d.set_quota("alice@example.test", Quota())
    assert d.quota("alice@example.test").unlimited


def test_quota_only_for_users_and_never_negative(d: Directory) -> None:
    with pytest.raises(DirectoryError, match="no such user"):
        d.set_quota("nobody@example.test", Quota(messages=1))
    d.add_user("alice@example.test", "pw")
    with pytest.raises(DirectoryError, match="negative"):
        d.set_quota("alice@example.test", Quota(messages=-1))


def test_a_deleted_user_takes_its_quota_along(d: Directory) -> None:
    d.add_user("alice@example.test", "pw")
    d.set_quota("alice@example.test", Quota(messages=1))
    d.delete_user("alice@example.test")
    d.add_user("alice@example.test", "pw")
    assert d.quota("alice@example.test").unlimited


def test_schema_1_gains_the_quota_table(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite3"
    with Directory(path, DOMAINS) as d:
        d.add_user("alice@example.test", "pw")
        with d._db.write() as db:
            db.execute("DROP TABLE quotas")
            db.execute("PRAGMA user_version = 1")
    with Directory(path, DOMAINS) as d:
        with d._db.read() as db:
            assert db.execute("PRAGMA user_version").fetchone() == (2,)
        d.set_quota("alice@example.test", Quota(storage=10))
        assert d.quota("alice@example.test") == Quota(storage=10)


# ----------------------------------------------------------------------------- opening


def config_file(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'domains = ["example.test"]\ndata_dir = "var"\n{storage}', "utf-8")
    return path


def test_open_directory_keeps_sqlite_under_data_dir(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, ""))
    assert prepare_directory(config) == f"user directory {tmp_path / 'var/directory.sqlite3'}"
    assert prepare_directory(config) is None
    with open_directory(config) as d:
        d.add_user("alice@example.test", "pw")
    with Directory(tmp_path / "var/directory.sqlite3", ["example.test"]) as d:
        assert d.users() == ["alice@example.test"]


def test_open_directory_on_postgresql_shares_the_users(tmp_path: Path, pg_dsn: str) -> None:
    storage = f'[storage]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n'
    config = load_config(config_file(tmp_path, storage))
    assert prepare_directory(config) == f"user directory tables in {redact(pg_dsn)}"
    assert prepare_directory(config) is None
    with open_directory(config) as d:
        d.add_user("alice@example.test", "pw")
        assert d.resolve("alice@example.test") == only("alice@example.test")
    assert not (tmp_path / "var/directory.sqlite3").exists()
