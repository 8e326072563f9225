"""`mailstead init` and `serve` with ``backend = "postgresql"``: every component's tables.

``init`` (plain and ``--system``) makes them as ``serve`` would; ``serve``
looks at them once before forking, so a database it cannot reach, or one a
newer Mailstead shaped, stops it with one line (the password never shown)
instead of workers dying one after another.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mailstead.cli import main
from mailstead.cluster_schema import COMPONENTS, prepare_cluster_schema
from mailstead.config import default_config_text
from mailstead.pgsql.connect import connect
from mailstead.pgsql.migrate import schema_version
from mailstead.store.pg_schema import MIGRATIONS
from tests.cli.runner import run

SYSTEM = ["init", "--system", "--domain", "example.org", "--hostname", "mail.example.org"]


def node_config(where: Path, dsn: str, *, system: bool = False) -> Path:
    text = default_config_text("example.test", "mail.example.test", system=system).replace(
        'format = "maildir"', f'format = "maildir"\nbackend = "postgresql"\ndsn = "{dsn}"', 1
    )
    where.mkdir(parents=True, exist_ok=True)
    path = where / "mailstead.toml"
    path.write_text(text, "utf-8")
    return path


def unreachable_dsn() -> str:
    """A DSN with a password, on a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://mailstead:hunter2@127.0.0.1:{port}/mailstead"


def versions(dsn: str) -> dict[str, int]:
    with connect(dsn) as conn:
        return {component: schema_version(conn, component) for component, _ in COMPONENTS}


def plant_newer_store(dsn: str) -> None:
    """The tables as a newer Mailstead would leave them: one version ahead."""
    prepare_cluster_schema(dsn)
    with connect(dsn) as conn:
        conn.execute("UPDATE mailstead_schema SET version = 99 WHERE component = 'store'")


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstead", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )


def test_init_makes_every_components_tables(tmp_path: Path, pg_dsn: str) -> None:
    config = node_config(tmp_path / "one", pg_dsn)
    first = run(config, "init")
    assert first.exit_code == 0, first.output
    # The directory's line, then the rest in one.
    lines = first.output.splitlines()
    assert any(line.startswith("created user directory tables in ") for line in lines)
    (rest,) = [line for line in lines if line.startswith("created tables of ")]
    assert rest.startswith("created tables of abuse, auth_penalty, queue, outbox, store in ")
    assert versions(pg_dsn) == {c: len(m) for c, m in COMPONENTS}

    again = run(node_config(tmp_path / "two", pg_dsn), "init")
    assert again.exit_code == 0, again.output
    assert "tables" not in again.output


def test_init_system_makes_them_too(tmp_path: Path, pg_dsn: str) -> None:
    node_config(tmp_path / "etc/mailstead", pg_dsn, system=True)
    result = CliRunner().invoke(main, [*SYSTEM, "--root", str(tmp_path), "--no-sendmail"])
    assert result.exit_code == 0, result.output
    assert "created every component's tables in the database, if absent\n" in result.output
    assert versions(pg_dsn) == {c: len(m) for c, m in COMPONENTS}


def test_init_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    result = run(node_config(tmp_path, unreachable_dsn()), "init")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("mailstead: cannot reach the database ")
    assert "password=***" in line and "hunter2" not in line


def test_init_refuses_a_database_newer_than_the_code(tmp_path: Path, pg_dsn: str) -> None:
    plant_newer_store(pg_dsn)
    result = run(node_config(tmp_path, pg_dsn), "init")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "the database's store tables are at version 99, but this Mailstead knows only up to"
        f" {len(MIGRATIONS)}: upgrade Mailstead on this node\n"
    )


def test_serve_stops_before_forking_when_the_database_is_unreachable(tmp_path: Path) -> None:
    config = node_config(tmp_path, unreachable_dsn())
    done = serve(config)
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("mailstead: cannot reach the database ")
    assert "hunter2" not in done.stderr
    assert "worker" not in done.stderr  # none was started


def test_serve_stops_before_forking_on_a_newer_schema(tmp_path: Path, pg_dsn: str) -> None:
    plant_newer_store(pg_dsn)
    done = serve(node_config(tmp_path, pg_dsn))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "mailstead: the database's store tables are at version 99, but this Mailstead knows"
        f" only up to {len(MIGRATIONS)}: upgrade Mailstead on this node"
    )
    assert "worker" not in done.stderr
