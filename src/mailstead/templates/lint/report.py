"""Findings and the report that carries them: text, JSON (stable, for CI) and HTML."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailstead.templates.lint.data import ClientIssue, load_table

__all__ = ["FORMAT", "SEVERITIES", "Finding", "LintReport", "families_of", "select_clients"]

# The JSON format's name and version; a change that removes or renames a key
# bumps the number (docs/templates.md, "Lint", documents the format).
FORMAT = "mailstead-lint/1"
SEVERITIES = ("error", "warning", "info")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# Points a finding takes from a family's score (docs/templates.md, "Scores"):
# by the finding's severity, and whether the family lacks the feature ("n")
# or has it in part ("a"); a finding naming no client costs every family.
_PENALTY = {
    "error": {"n": 10, "a": 3, "all": 10},
    "warning": {"n": 5, "a": 2, "all": 3},
    "info": {"n": 0, "a": 0, "all": 0},
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, where it is, which clients it hurts, and how to fix it.

    ``check`` is a stable identifier: ``caniemail:<slug>`` for a feature of the
    support table, a short name (``img-alt``, ``structure-unclosed``...) for the
    checks of our own. ``clients`` is empty when the problem hurts every client.
    """

    check: str
    feature: str
    severity: str
    line: int
    column: int
    snippet: str
    message: str
    clients: tuple[ClientIssue, ...] = ()
    fix: str | None = None
    url: str | None = None
    occurrences: int = 1
    lines: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "check": self.check,
            "feature": self.feature,
            "severity": self.severity,
            "line": self.line,
            "column": self.column,
            "snippet": self.snippet,
            "message": self.message,
            "clients": [c.to_json() for c in self.clients],
            "fix": self.fix,
            "url": self.url,
            "occurrences": self.occurrences,
            "lines": list(self.lines) or [self.line],
        }

    def client_names(self) -> list[str]:
        table = load_table()
        return [
            f"{table.family_name(c.family)} {table.platform_name(c.platform)}"
            f" ({'not supported' if c.support == 'n' else 'partial'})"
            for c in self.clients
        ]


def _scores(findings: Iterable[Finding], families: Iterable[str]) -> dict[str, int]:
    score = dict.fromkeys(families, 100)
    for finding in findings:
        points = _PENALTY[finding.severity]
        if not finding.clients:
            for family in score:
                score[family] -= points["all"]
            continue
        worst: dict[str, str] = {}
        for client in finding.clients:
            if worst.get(client.family) != "n":
                worst[client.family] = client.support
        for family, support in worst.items():
            if family in score:
                score[family] -= points[support]
    return {family: max(0, value) for family, value in score.items()}


class LintReport:
    """The findings of one lint run, sorted by position, and a score per client family."""

    def __init__(self, findings: Iterable[Finding], families: Iterable[str]) -> None:
        self.findings: list[Finding] = sorted(
            findings, key=lambda f: (f.line, f.column, _RANK[f.severity], f.check)
        )
        self.scores: dict[str, int] = _scores(self.findings, families)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def fails(self, threshold: str) -> bool:
        """True when a finding is at or above ``threshold`` ('error' or 'warning')."""
        if threshold not in ("error", "warning"):
            raise ValueError(f"--fail-on must be error or warning, not {threshold!r}")
        limit = _RANK[threshold]
        return any(_RANK[f.severity] <= limit for f in self.findings)

    def to_json(self) -> dict[str, object]:
        table = load_table()
        return {
            "format": FORMAT,
            "data": {
                "source": "caniemail",
                "version": table.package_version,
                "date": table.data_date,
            },
            "summary": {name: self.count(name) for name in SEVERITIES},
            "scores": dict(self.scores),
            "findings": [f.to_json() for f in self.findings],
        }

    def to_text(self) -> str:
        out: list[str] = []
        for f in self.findings:
            more = f" (+{f.occurrences - 1} more)" if f.occurrences > 1 else ""
            out.append(f"{f.line}:{f.column}: {f.severity}: {f.feature}: {f.message}{more}")
            if f.snippet:
                out.append(f"    | {f.snippet}")
            if f.clients:
                out.append("    clients: " + ", ".join(f.client_names()))
                notes = sorted({n for c in f.clients for n in c.notes})
                out.extend(f"    note: {n}" for n in notes)
            if f.fix:
                out.append(f"    fix: {f.fix}")
        table = load_table()
        summary = ", ".join(
            f"{self.count(s)} {s}{'s' if self.count(s) != 1 else ''}" for s in SEVERITIES
        )
        out.append(f"{summary}")
        out.append(
            "scores: "
            + ", ".join(f"{table.family_name(k)} {v}" for k, v in sorted(self.scores.items()))
        )
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        table = load_table()
        e = html.escape
        rows = []
        for f in self.findings:
            clients = "<br>".join(e(name) for name in f.client_names())
            notes = "".join(
                f"<li>{e(n)}</li>" for n in sorted({n for c in f.clients for n in c.notes})
            )
            link = f' <a href="{e(f.url)}">caniemail</a>' if f.url else ""
            rows.append(
                f'<tr class="{e(f.severity)}"><td>{f.line}:{f.column}</td><td>{e(f.severity)}</td>'
                f"<td><b>{e(f.feature)}</b>{link}<br>{e(f.message)}"
                f"<pre>{e(f.snippet)}</pre></td><td>{clients}<ul>{notes}</ul></td>"
                f"<td>{e(f.fix or '')}</td></tr>"
            )
        scores = "".join(
            f"<li>{e(table.family_name(k))}: {v}</li>" for k, v in sorted(self.scores.items())
        )
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            "<title>Mailstead lint report</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:4px;vertical-align:top}"
            "tr.error td:nth-child(2){color:#a00}tr.warning td:nth-child(2){color:#850}"
            "pre{white-space:pre-wrap;margin:4px 0}</style></head><body>"
            f"<h1>Lint report</h1><p>{e(', '.join(f'{self.count(s)} {s}' for s in SEVERITIES))}"
            f" &middot; data: caniemail {e(table.package_version)} ({e(table.data_date)})</p>"
            f"<h2>Scores</h2><ul>{scores}</ul><h2>Findings</h2>"
            "<table><tr><th>Where</th><th>Severity</th><th>What</th><th>Clients</th><th>Fix</th></tr>"
            + "".join(rows)
            + "</table></body></html>\n"
        )


def families_of(selection: frozenset[tuple[str, str]] | None) -> list[str]:
    """The client families a report scores: the chosen ones, or all the table tests."""
    if selection:
        return sorted({family for family, _ in selection})
    return sorted({family for family, _ in load_table().tested})


def select_clients(
    findings: Iterable[Finding], selection: frozenset[tuple[str, str]] | None
) -> list[Finding]:
    """The findings with only the chosen clients; a client-specific one none of them has goes."""
    if selection is None:
        return list(findings)
    out = []
    for finding in findings:
        if not finding.clients:
            out.append(finding)
            continue
        kept = tuple(c for c in finding.clients if (c.family, c.platform) in selection)
        if kept:
            out.append(
                Finding(
                    finding.check,
                    finding.feature,
                    finding.severity,
                    finding.line,
                    finding.column,
                    finding.snippet,
                    finding.message,
                    kept,
                    finding.fix,
                    finding.url,
                    finding.occurrences,
                    finding.lines,
                )
            )
    return out
