"""`mailstead check config` with ``backend = "postgresql"``: the database is looked at too.

Reachable and no newer than the code: nothing to say (tables missing or
older are what ``serve`` makes). Unreachable, or shaped by a newer
Mailstead: an error on ``storage.dsn``, the password never shown.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailstead.cluster_schema import prepare_cluster_schema
from mailstead.mta.queue_schema import POSTGRES_MIGRATIONS
from mailstead.pgsql.connect import connect
from tests.checks.conftest import make_certificate, run_check
from tests.cli.test_cluster_schema import unreachable_dsn


def write_config(tmp_path: Path, dsn: str) -> Path:
    make_certificate(tmp_path / "var", issuer="Test CA")
    path = tmp_path / "mailstead.toml"
    path.write_text(
        'hostname = "mail.example.test"\ndomains = ["example.test"]\n'
        "[listen]\n"
        + "".join(
            f'{name} = ["127.0.0.1:0"]\n'
            for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
        )
        + f'[storage]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
    )
    return path


def storage_problems(path: Path) -> list[dict[str, str]]:
    result = run_check(path, "config", "--json")
    return [p for p in json.loads(result.output)["problems"] if p["key"] == "storage.dsn"]


def test_a_reachable_database_passes_before_and_after_serve_made_its_tables(
    tmp_path: Path, pg_dsn: str
) -> None:
    config = write_config(tmp_path, pg_dsn)
    result = run_check(config, "config")
    assert result.exit_code == 0, result.output
    assert result.output == f"{config}: 0 errors, 0 warnings; OK\n"
    prepare_cluster_schema(pg_dsn)
    assert run_check(config, "config").exit_code == 0


def test_an_unreachable_database_is_an_error_without_its_password(tmp_path: Path) -> None:
    (problem,) = storage_problems(write_config(tmp_path, unreachable_dsn()))
    assert problem["severity"] == "error"
    assert problem["reason"].startswith("cannot reach the database ")
    assert "password=***" in problem["reason"] and "hunter2" not in problem["reason"]


def test_tables_newer_than_the_code_are_an_error(tmp_path: Path, pg_dsn: str) -> None:
    prepare_cluster_schema(pg_dsn)
    with connect(pg_dsn) as conn:
        conn.execute("UPDATE mailstead_schema SET version = 7 WHERE component = 'queue'")
    (problem,) = storage_problems(write_config(tmp_path, pg_dsn))
    assert problem["reason"] == (
        "the database's queue tables are at version 7, but this Mailstead knows only up to"
        f" {len(POSTGRES_MIGRATIONS)}: upgrade Mailstead on this node"
    )
