"""Run the fuzz targets, each in its own libFuzzer process, and report one line per target.

``python -m fuzz.run --seconds N [--target NAME ...] [--grow-corpus]``

Each target starts from a copy of its seed corpus (``fuzz/corpus/<target>``)
in a temporary directory, so a bounded run in ``make test`` leaves the
repository as it was. ``--grow-corpus`` merges what a run found that adds
coverage back into the seed corpus (``-merge=1``), for long runs. A crash,
hang or memory blow-up makes the exit status non-zero; libFuzzer's input
is kept in ``--artifacts`` (default ``fuzz/artifacts``) and named in the
report, ready for a regression case in ``tests/fuzz_regressions``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
TARGETS = (
    "imap_command",
    "smtp_command",
    "smtp_address",
    "mime_header",
    "decoders",
    "message_summary",
    "proxy_header",
)
# -timeout: a unit slower than this is a hang. The known exponential regexes
# in the IMAP parser are filtered out in imap_command until their fix lands.
LIBFUZZER_FLAGS = ("-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1")

_STATUS = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_EXEC_RATE = re.compile(rb"stat::average_exec_per_sec:\s+(\d+)")
_ARTIFACT = re.compile(rb"Test unit written to (\S+)")
_KINDS = ("crash", "timeout", "oom", "leak")


@dataclass
class Result:
    """How one target's run ended, and what it reached."""

    target: str
    returncode: int
    seconds: float
    execs: int = 0
    exec_rate: int = 0
    cov: int = 0
    features: int = 0
    corpus: int = 0
    artifact: str | None = None
    kind: str = "ok"
    detail: str = ""
    log: Path | None = None

    @property
    def failed(self) -> bool:
        return self.kind != "ok"

    def line(self) -> str:
        stats = (
            f"{self.execs:>9} execs {self.exec_rate:>6}/s  cov {self.cov:>5}  ft {self.features:>6}"
            f"  corpus {self.corpus:>5}  {self.seconds:5.0f}s"
        )
        if not self.failed:
            return f"{self.target:<13} ok       {stats}"
        where = f" input: {self.artifact}" if self.artifact else ""
        why = f" ({self.detail})" if self.detail else ""
        return f"{self.target:<13} {self.kind.upper():<8} {stats}{why}{where} log: {self.log}"


def _detail(log: bytes) -> str:
    """The exception line of a Python crash, or libFuzzer's summary."""
    lines = log.decode("utf-8", "replace").splitlines()
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line:
            for follow in lines[i + 1 :]:
                if follow and not follow.startswith((" ", "Traceback")):
                    return follow.strip()[:200]
    for line in lines:
        if line.startswith("SUMMARY:") or "ALARM:" in line:
            return line.strip()[:200]
    return ""


def run_target(target: str, seconds: int, artifacts: Path, grow: bool, extra: list[str]) -> Result:
    """Fuzz ``target`` for ``seconds`` from a copy of its seed corpus."""
    seeds = FUZZ_DIR / "corpus" / target
    work = Path(tempfile.mkdtemp(prefix=f"mailstead-fuzz-{target}-"))
    corpus = work / "corpus"
    shutil.copytree(seeds, corpus) if seeds.is_dir() else corpus.mkdir()
    artifacts.mkdir(parents=True, exist_ok=True)
    log = work / "fuzz.log"
    cmd = [
        sys.executable,
        "-m",
        f"fuzz.{target}",
        f"-max_total_time={seconds}",
        *LIBFUZZER_FLAGS,
        f"-artifact_prefix={artifacts}/{target}-",
    ]
    dictionary = FUZZ_DIR / "dicts" / f"{target}.dict"
    if dictionary.exists():
        cmd.append(f"-dict={dictionary}")
    cmd += [*extra, str(corpus)]
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    result = Result(target, proc.returncode, time.monotonic() - start, log=log)
    text = log.read_bytes()
    statuses = _STATUS.findall(text)
    if statuses:
        execs, cov, ft, corp = statuses[-1]
        result.execs, result.cov, result.features, result.corpus = (
            int(execs),
            int(cov),
            int(ft),
            int(corp),
        )
    rate = _EXEC_RATE.search(text)
    if rate:
        result.exec_rate = int(rate[1])
    found = _ARTIFACT.findall(text)
    if found:
        result.artifact = found[-1].decode()
        name = Path(result.artifact).name.removeprefix(f"{target}-")
        result.kind = next((k for k in _KINDS if name.startswith(k)), "crash")
    elif proc.returncode != 0:
        result.kind = "error"
    if result.failed:
        result.detail = _detail(text)
        return result  # keep the work directory: the log is named in the report
    if grow:
        merge = [sys.executable, "-m", f"fuzz.{target}", "-merge=1", str(seeds), str(corpus)]
        seeds.mkdir(parents=True, exist_ok=True)
        subprocess.run(merge, cwd=ROOT, capture_output=True, check=True)
    shutil.rmtree(work)
    result.log = None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument(
        "--target", action="append", choices=TARGETS, help="run only this target (repeatable)"
    )
    parser.add_argument(
        "--grow-corpus", action="store_true", help="merge new coverage into fuzz/corpus"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=FUZZ_DIR / "artifacts",
        help="where crash inputs are kept (default fuzz/artifacts)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once (default 1)")
    parser.add_argument(
        "libfuzzer", nargs="*", help="extra libFuzzer flags, after --, e.g. -- -max_len=8192"
    )
    args = parser.parse_args(argv)
    targets = args.target or list(TARGETS)
    artifacts = args.artifacts.resolve()

    def one(target: str) -> Result:
        result = run_target(target, args.seconds, artifacts, args.grow_corpus, args.libfuzzer)
        print(result.line(), flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, targets))
    failed = [r.target for r in results if r.failed]
    if failed:
        print(f"fuzz: {len(failed)} target(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
