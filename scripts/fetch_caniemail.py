#!/usr/bin/env python3
"""Fetch the caniemail client-support data and write the compact copy the linter ships.

Reproducible: ``npm pack caniemail@VERSION`` (the pinned version below, or
``--version``) downloads the package tarball from the npm registry, its
``data/caniemail.json`` is read, and the facts the linter needs are written
to ``src/mailstead/templates/data/caniemail.json`` with the licence notice,
the data's date and the package version in the header fields, plus a NOTICE
file beside it. Run from the checkout's top directory::

    python scripts/fetch_caniemail.py            # the pinned version
    python scripts/fetch_caniemail.py --version 2.1.0

then run the lint tests and commit both files. The tests read the shipped
file only, never the network.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PINNED_VERSION = "2.0.2"
PACKAGE = "caniemail"
HOME = "https://www.caniemail.com/"
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "mailstead" / "templates" / "data"

# "y", "n", "a" (partial) or "u" (unknown), then zero or more "#N" note numbers.
_SUPPORT = re.compile(r"^([ynau])((?:\s+#\d+)*)\s*$")


def _pack(version: str, workdir: Path) -> Path:
    """Download the package tarball with npm (nothing is installed or run)."""
    done = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--pack-destination", str(workdir), "--silent"],
        check=True,
        capture_output=True,
        text=True,
    )
    name = done.stdout.strip().splitlines()[-1]
    return workdir / name


def _read_member(tarball: Path, member: str) -> str:
    with tarfile.open(tarball, "r:gz") as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{tarball.name}: {member} is not a file")
        return extracted.read().decode("utf-8")


def _support(raw: str, where: str) -> list[Any]:
    """``"a #1 #2"`` -> ``["a", [1, 2]]``."""
    match = _SUPPORT.match(raw.strip())
    if match is None:
        raise SystemExit(f"unexpected support value {raw!r} at {where}")
    notes = [int(n) for n in re.findall(r"#(\d+)", match.group(2))]
    return [match.group(1), notes]


def compact(source: dict[str, Any], version: str, licence: str) -> dict[str, Any]:
    """Keep what the linter reads; versions stay in the data's order (oldest test first)."""
    features: dict[str, Any] = {}
    for feature in source["data"]:
        slug = feature["slug"]
        support: dict[str, dict[str, dict[str, list[Any]]]] = {}
        for family, platforms in feature["stats"].items():
            for platform, versions in platforms.items():
                support.setdefault(family, {})[platform] = {
                    str(ver): _support(str(value), f"{slug}/{family}/{platform}/{ver}")
                    for ver, value in versions.items()
                }
        features[slug] = {
            "title": feature["title"],
            "category": feature["category"],
            "url": feature["url"],
            "notes": {str(k): v for k, v in (feature.get("notes_by_num") or {}).items()},
            "support": support,
        }
    copyright_lines = [
        line.strip() for line in licence.splitlines() if line.startswith("Copyright")
    ]
    return {
        "source": f"{PACKAGE}@{version} (npm), data from {HOME}",
        "package_version": version,
        "api_version": source.get("api_version"),
        "data_date": source.get("last_update_date"),
        "license": "MIT",
        "copyright": copyright_lines,
        "families": source["nicenames"]["family"],
        "platforms": source["nicenames"]["platform"],
        "features": features,
    }


def _notice(data: dict[str, Any], licence: str) -> str:
    return (
        "caniemail.json in this directory is derived from the caniemail data set\n"
        f"({data['source']}), last updated {data['data_date']},\n"
        "reduced by scripts/fetch_caniemail.py. It is distributed under the\n"
        "following licence:\n\n" + licence.strip() + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=PINNED_VERSION, help="caniemail package version")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory to write into")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _pack(args.version, Path(tmp))
        source = json.loads(_read_member(tarball, "package/data/caniemail.json"))
        licence = _read_member(tarball, "package/LICENSE")
    data = compact(source, args.version, licence)
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    (args.out / "caniemail.json").write_text(text + "\n", encoding="utf-8")
    (args.out / "NOTICE").write_text(_notice(data, licence), encoding="utf-8")
    print(f"wrote {len(data['features'])} features, data of {data['data_date']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
