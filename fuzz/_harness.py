"""What the fuzz targets share: instrumentation, the libFuzzer entry point, input helpers.

atheris is imported only when a target really fuzzes, so the regression
tests in ``tests/fuzz_regressions`` can call ``test_one_input`` without it
and without instrumented code.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path


def instrumented(module_name: str) -> AbstractContextManager[object]:
    """Instrument the ``mailstead`` imports in this block when the target runs as a fuzzer.

    ``module_name`` is the caller's ``__name__``: only ``python -m fuzz.<target>``
    (``"__main__"``) instruments; an import from a test does not.
    """
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["mailstead"])


def fuzz(test_one_input: Callable[[bytes], None], argv: list[str] | None = None) -> None:
    """Hand ``test_one_input`` to libFuzzer with the command line's flags and corpus dirs."""
    import atheris

    args = list(sys.argv if argv is None else argv)
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        # libFuzzer runs argv[0] through the shell for -merge and -fork: with
        # ``python -m`` that is a .py file, so make it the command that ran us.
        args[0] = f"{shlex.quote(sys.executable)} -m {spec.name}"
        root = str(Path(__file__).resolve().parent.parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p
        )
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


def chunks(data: bytes, max_pieces: int = 16) -> Iterator[bytes]:
    """``data`` cut in pieces as TCP may deliver it; the cuts depend only on ``data``.

    The seed is the CRC of the input, so a crash reproduces from its bytes
    alone and the seed corpus stays plain text.
    """
    rng = random.Random(zlib.crc32(data))
    cuts = sorted({rng.randrange(len(data) + 1) for _ in range(rng.randrange(max_pieces))})
    start = 0
    for cut in [*cuts, len(data)]:
        yield data[start:cut]
        start = cut


def text(data: bytes) -> str:
    """``data`` as a ``str``: UTF-8 when valid (as the SMTP server decodes), else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
