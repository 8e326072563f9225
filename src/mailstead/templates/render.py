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
the output is streamed and counted, and the render checks its deadline
itself, at every loop iteration, every call and every filter (where
template code goes round, or hands work to Python), so an endless loop ends
as one clear error. The check raises in the render's own code, at a point
it chose: no thread of its own (0.4 ms a render), no exception arriving
from another thread in the middle of lock handling. What is not stopped
midway is one call that runs long in one go: ``lipsum`` is bounded by the
output limit, and in the sandbox ``range``, ``*`` and ``**`` too.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from mailstead.limits import TemplateLimits
from mailstead.templates.errors import TemplateError
from mailstead.templates.source import FolderLoader

__all__ = ["JinjaOutput", "JinjaTemplate", "TemplateError"]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_Node = TypeVar("_Node", bound=nodes.Node)


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


# The deadline of the render running in this thread: (time.monotonic() it passes, template).
_running = threading.local()


def _check_deadline() -> None:
    due: tuple[float, JinjaTemplate] | None = getattr(_running, "deadline", None)
    if due is not None and time.monotonic() > due[0]:
        seconds = due[1].limits.render_seconds
        raise TemplateError(
            f"{due[1].path}: rendering took longer than {seconds:g} s (an endless loop?)"
        )


def _checked(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """``function`` (a filter), checking the deadline first; Jinja2's markers (what the
    filter is passed) copied along."""

    @functools.wraps(function)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        _check_deadline()
        return function(*args, **kwargs)

    return checked


class _CheckedContext(jinja2.runtime.Context):
    """The render's context: every call the template makes (a macro, a function, a
    method, ``loop()`` of a recursive loop) checks the deadline first."""

    def call(self, obj: Callable[..., object], /, *args: object, **kwargs: object) -> object:
        _check_deadline()
        return super().call(obj, *args, **kwargs)


class _CheckedLoops(CodeGenerator):
    """Jinja2's code generator, with a call at the start of every loop iteration, and in
    every test of a loop's ``if``, which :class:`_CheckedContext` checks: a loop is the
    one place template code can spin without calling anything."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        checked = copy.copy(node)  # the parsed tree stays as parsed
        checked.body = [self._added(nodes.ExprStmt(self._step()), node), *node.body]
        if node.test is not None:
            checked.test = self._added(nodes.And(self._step(), node.test), node)
        super().visit_For(checked, frame)

    @staticmethod
    def _step() -> nodes.Call:
        """``environment.loop_step()``, a call like any the template makes."""
        return nodes.Call(nodes.EnvironmentAttribute("loop_step"), [], [], None, None)

    def _added(self, added: _Node, loop: nodes.For) -> _Node:
        added.set_lineno(loop.lineno).set_environment(self.environment)
        return added


class _DeadlineChecks:
    """What makes an environment's templates check their render's deadline: the code
    generator, the context, every filter; and ``lipsum``, one Python loop as long as
    its arguments say, bounded by the output limit."""

    code_generator_class: type[CodeGenerator] = _CheckedLoops
    context_class: type[jinja2.runtime.Context] = _CheckedContext
    filters: dict[str, Callable[..., object]]
    globals: dict[str, object]

    def _check(self, output_bytes: int) -> None:
        self._output_bytes = output_bytes
        self.filters = {name: _checked(filter_) for name, filter_ in self.filters.items()}
        self.globals["lipsum"] = self._lipsum

    @staticmethod
    def loop_step() -> bool:
        """Called by every loop iteration: the call is the check."""
        return True

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        # (lipsum's own keyword names) n paragraphs of up to max words, 2 characters each
        if n * max * 2 > self._output_bytes:
            raise SecurityError("lipsum's text would exceed the output limit")
        return generate_lorem_ipsum(n, html, min, max)


class _Environment(_DeadlineChecks, jinja2.Environment):
    """Jinja2's environment for trusted templates, with the deadline checks."""

    def __init__(self, output_bytes: int, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._check(output_bytes)


class _BoundedSandbox(_DeadlineChecks, SandboxedEnvironment):
    """Jinja2's sandbox, with the deadline checks, also refusing ``*`` and ``**`` whose
    result would be huge."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, output_bytes: int, **options: object) -> None:
        super().__init__(**options)
        self._check(output_bytes)

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
            env = _Environment(self.limits.output_bytes, **options)
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
        outer = getattr(_running, "deadline", None)
        _running.deadline = (time.monotonic() + self.limits.render_seconds, self)
        try:
            return self._render(data)
        finally:
            _running.deadline = outer

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
