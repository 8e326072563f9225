"""The Jinja2 stage: a template file compiled once, rendered per data set under limits.

Autoescaping is on (data never becomes markup, RFC 2045 bodies carry what
the author wrote and nothing a recipient's name smuggled in); an undefined
variable is an error with its file and line rather than an empty string (a
mail to many people should not say "Dear ,"). ``{% include %}`` and
``{% extends %}`` find files in the template's folder only. A template the
administrator marks untrusted runs in Jinja2's sandbox, which refuses
``''.__class__`` and the like, ranges beyond 100,000 and, here, strings or
numbers multiplied past the output limit.

Every render runs with a deadline and an output budget (``TemplateLimits``):
the output is streamed and counted, and a render that outlives its deadline
is stopped by an exception raised in its thread, so an endless loop ends as
one clear error.
"""

from __future__ import annotations

import ctypes
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import jinja2
import markupsafe
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.sandbox import SandboxedEnvironment

from mailstead.limits import TemplateLimits
from mailstead.templates.errors import TemplateError
from mailstead.templates.source import FolderLoader

__all__ = ["JinjaOutput", "JinjaTemplate", "TemplateError"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class JinjaOutput:
    """What one render gives: the markup (HTML or MJML) and the header values.

    ``values``: where the data's values are in the markup (start, end), each
    as autoescaping wrote it; a value inside a macro's or a block's output
    is not placed.
    """

    markup: str
    subject: str | None
    preheader: str | None
    values: tuple[tuple[int, int], ...] = ()


# The escaped data values finalize saw since the last chunk of output: lets
# _collect tell the template's own markup from the data's (see lint.batch).
_recorded = threading.local()


@jinja2.pass_eval_context
def _record(eval_ctx: EvalContext, value: object) -> object:
    pending: list[str] | None = getattr(_recorded, "pending", None)
    # markup (|safe, or no autoescaping) is the template's own, not data
    if pending is not None and eval_ctx.autoescape and not hasattr(value, "__html__"):
        escaped = markupsafe.escape(value)  # as Jinja2 would write it, which it leaves alone
        pending.append(str(escaped))
        return escaped
    return value


class _Interrupted(BaseException):
    """Raised inside a render thread that outlived its deadline, to stop it."""


class _BoundedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, also refusing ``*`` and ``**`` whose result would be huge."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, output_bytes: int, **options: object) -> None:
        super().__init__(**options)
        self._output_bytes = output_bytes

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: object, right: object
    ) -> object:
        too_big = False
        if operator == "*":
            too_big = any(
                isinstance(seq, str | list | tuple)
                and isinstance(times, int)
                and len(seq) * times > self._output_bytes
                for seq, times in ((left, right), (right, left))
            )
        elif isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            too_big = abs(left).bit_length() * right > 8 * self._output_bytes
        if too_big:
            raise SecurityError(f"the result of {operator} exceeds the output limit")
        return super().call_binop(context, operator, left, right)


class JinjaTemplate:
    """One template file, compiled once; :meth:`render` fills it with one data set."""

    def __init__(
        self, path: Path, *, untrusted: bool = False, limits: TemplateLimits | None = None
    ) -> None:
        self.path = path
        self.limits = limits or TemplateLimits()
        self._loader = FolderLoader(path.parent, self.limits)
        options: dict[str, object] = {
            "loader": self._loader,
            # .mjml is markup too: a value must not become an element.
            "autoescape": jinja2.select_autoescape(
                ["html", "htm", "xml", "mjml"], default_for_string=False
            ),
            "undefined": jinja2.StrictUndefined,
            "keep_trailing_newline": True,
            "finalize": _record,
        }
        env: jinja2.Environment
        if untrusted:
            env = _BoundedSandbox(self.limits.output_bytes, **options)
        else:
            env = jinja2.Environment(**options)  # type: ignore[arg-type]
        self._template = self._compile(lambda: env.get_template(path.name))
        front = self._loader.front_matter.get(path.name)
        self._subject = None
        self._preheader = None
        if front is not None:
            self._subject = self._header(env, front.subject, "subject")
            self._preheader = self._header(env, front.preheader, "preheader")

    def _compile(self, make: Callable[[], _T]) -> _T:
        try:
            return make()
        except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError) as exc:
            raise self._load_error(exc) from None

    def _load_error(
        self, exc: jinja2.TemplateNotFound | jinja2.TemplateSyntaxError
    ) -> TemplateError:
        """A template (or one it includes) that is missing or does not parse, in one line."""
        if isinstance(exc, jinja2.TemplateNotFound):
            return TemplateError(f"{self.path}: template not found: {exc.name}")
        return TemplateError(f"{exc.filename or self.path}:{exc.lineno}: {exc.message}")

    def _header(
        self, env: jinja2.Environment, source: str | None, key: str
    ) -> jinja2.Template | None:
        if source is None:
            return None
        try:
            return env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{self.path}: front matter {key}: {exc.message}") from None

    def render(self, data: Mapping[str, object]) -> JinjaOutput:
        """The template filled with ``data``, or TemplateError naming file and line."""
        return _with_deadline(lambda: self._render(data), self.limits.render_seconds, self.path)

    def _render(self, data: Mapping[str, object]) -> JinjaOutput:
        budget = self.limits.output_bytes
        values: list[tuple[int, int]] = []
        try:
            _recorded.pending = []
            try:
                markup = _collect(self._template.generate(data), budget, self.path, values)
            finally:
                _recorded.pending = None
            subject = preheader = None
            if self._subject is not None:
                subject = " ".join(
                    _collect(self._subject.generate(data), budget, self.path).split()
                )
            if self._preheader is not None:
                preheader = " ".join(
                    _collect(self._preheader.generate(data), budget, self.path).split()
                )
        except TemplateError:
            raise
        except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError) as exc:
            # an included template is loaded and parsed when it is first included
            raise self._load_error(exc) from None
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateError(f"{self._where(exc)}: {_reason(exc)}") from None
        except RecursionError:
            raise TemplateError(f"{self.path}: recursion too deep") from None
        except MemoryError:
            raise TemplateError(f"{self.path}: out of memory") from None
        return JinjaOutput(markup, subject or None, preheader or None, tuple(values))

    def _where(self, exc: BaseException) -> str:
        """``file:line`` of the innermost template frame that raised ``exc``."""
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename in self._loader.shown:
                return f"{frame.filename}:{frame.lineno}"
            if frame.filename == "<template>":
                return f"{self.path}: front matter"
        return str(self.path)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, jinja2.TemplateError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _collect(
    chunks: Iterator[str],
    budget: int,
    path: Path,
    values: list[tuple[int, int]] | None = None,
) -> str:
    """The chunks joined; into ``values``, where each chunk that is one data value is."""
    out: list[str] = []
    size = 0
    pending: list[str] | None = getattr(_recorded, "pending", None)
    for chunk in chunks:
        if pending and values is not None:
            # Jinja2 yields a {{ value }} as a chunk of its own, right after finalize
            if len(pending) == 1 and chunk == pending[0] and chunk:
                values.append((size, size + len(chunk)))
            pending.clear()
        size += len(chunk)
        if size > budget:
            raise TemplateError(f"{path}: output larger than {budget} characters")
        out.append(chunk)
    return "".join(out)


def _with_deadline(work: Callable[[], _T], seconds: float, path: Path) -> _T:
    """``work()`` run in a thread of its own, stopped if it outlives ``seconds``."""
    result: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except _Interrupted:
            pass
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="template-render", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _interrupt(worker)
        raise TemplateError(f"{path}: rendering took longer than {seconds:g} s (an endless loop?)")
    if failure:
        raise failure[0]
    return result[0]


def _interrupt(worker: threading.Thread) -> None:
    # The exception is raised in the worker at its next bytecode: a Jinja2
    # loop is Python code, so the thread ends instead of spinning on.
    if worker.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(_Interrupted)
        )
