"""The template sandbox: Jinja2's immutable sandbox with a budget that interrupts.

Every loop step, call, attribute lookup and output chunk spends from a per-render
budget (operations and a deadline); every way of building a value (``~``, ``+``,
``*``, ``format``, ``center``, ``join``, ``{% set %}`` blocks, macros…) is sized
before it is built; functions given to templates have safe reprs (no dataclass
field, no key). A failure is a :class:`TemplateError` with a clear message.
Renders run in worker threads (the dispatcher's plan step), never on the event loop.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, cast

from jinja2 import StrictUndefined, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: characters of one field's source
MAX_SOURCE_CHARS = 64_000
#: characters of one rendered field
MAX_OUTPUT_CHARS = 256_000
#: seconds one field may take to render
MAX_RENDER_SECONDS = 0.5


class TemplateError(Exception):
    """The template cannot give this message; ``str()`` says why, for the outcome."""


# --- the sandbox and its budget -------------------------------------------------------
#
# A template is semi-trusted: its author may write a typo or a hostile loop. Rendering
# is bounded three ways, all checked *inside* the render (not between output chunks):
#
# - time and operations: every loop iteration, call, attribute lookup and output
#   statement spends one operation of a per-render budget and checks the deadline, so a
#   render stops within one operation of its limit however it is nested;
# - size: no expression, filter, method call, ``~`` / ``+`` / ``*`` / ``%`` or captured
#   block may build a string, list or mapping beyond :data:`MAX_BUILT` (checked *before*
#   building where the size can be known beforehand: widths, ``replace``, ``join``,
#   ``indent``, ``wordwrap``, format strings), nor an integer beyond :data:`MAX_INT_BITS`;
#   and all output statements together (also those captured by ``{% set %}`` blocks and
#   macros) may emit at most :data:`MAX_EMITTED_CHARS`;
# - secrets: a callable in the context is a :class:`TemplateFunction`, whose ``repr`` is
#   ``<function name>`` and which refuses to be printed; no dataclass, no bound method,
#   no memory address reaches the output.

#: the largest string, list or mapping an expression may build (characters or items)
MAX_BUILT = MAX_OUTPUT_CHARS
#: the largest integer an expression may build, in bits
MAX_INT_BITS = 4_096
#: characters all output statements of one render may emit (captured blocks included)
MAX_EMITTED_CHARS = 4 * MAX_OUTPUT_CHARS
#: characters (or items) all expressions of one render may build together
MAX_BUILT_TOTAL = 64 * MAX_OUTPUT_CHARS
#: operations (loop iterations, calls, lookups, outputs) of one render
MAX_OPERATIONS = 2_000_000
#: the longest ``range()``
MAX_RANGE = 10_000


class _Refused(Exception):
    """A limit of the sandbox was reached; ``str()`` says which (raised mid-render)."""


class _Budget:
    __slots__ = ("built", "deadline", "emitted", "max_seconds", "operations")

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.operations = MAX_OPERATIONS
        self.emitted = MAX_EMITTED_CHARS
        self.built = MAX_BUILT_TOTAL

    def spend(self) -> None:
        self.operations -= 1
        if self.operations & 31 == 0:  # the clock every 32 operations: each is bounded
            if self.operations < 0:
                raise _Refused(f"the template does more than {MAX_OPERATIONS:,} operations")
            if time.monotonic() > self.deadline:
                raise _Refused(f"rendering took longer than {self.max_seconds}s")


_BUDGET: ContextVar[_Budget | None] = ContextVar("tenure_template_budget", default=None)


def _spend() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend()


class TemplateFunction:
    """A function a template may call (``coupon('pool')``, ``link(url)``). It has no
    public attribute, its ``repr`` is ``<function name>``, and printing it — a template
    that says ``{{ coupon }}`` instead of ``{{ coupon('pool') }}`` — is a clear
    template error, never the repr of what it is bound to."""

    __slots__ = ("_fn", "_name")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self._name = name
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<function {self._name}>"

    def __str__(self) -> str:
        raise _Refused(f"{self._name} is a function: call it, e.g. {self._name}(...)")

    def __html__(self) -> str:
        return self.__str__()


def _safe_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context`` with every top-level callable wrapped in a :class:`TemplateFunction`."""
    return {
        key: TemplateFunction(key, value)
        if callable(value) and not isinstance(value, TemplateFunction | type)
        else value
        for key, value in context.items()
    }


def _size_of(value: Any, limit: int = MAX_BUILT, depth: int = 0) -> int:
    """About how many characters ``value`` prints as; stops counting past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, bytes | bytearray):
        return 3 * len(value)
    if depth > 32:
        return limit + 1
    if isinstance(value, Mapping):
        total = 2
        for key, item in value.items():
            total += _size_of(key, limit, depth + 1) + _size_of(item, limit, depth + 1) + 4
            if total > limit:
                break
        return total
    if isinstance(value, list | tuple | set | frozenset | range):
        if isinstance(value, range):
            return len(value) * 7
        total = 2
        for item in value:
            total += _size_of(item, limit, depth + 1) + 2
            if total > limit:
                break
        return total
    return 32


def _check_built(value: Any) -> Any:
    """``value`` if it is within the size limits; :class:`_Refused` otherwise. Its size
    is also spent from what one render may build in all."""
    if isinstance(value, str | list | tuple | dict | set | frozenset | bytes):
        if len(value) > MAX_BUILT:
            raise _Refused(f"the template builds a value beyond {MAX_BUILT:,} characters")
        budget = _BUDGET.get()
        if budget is not None:
            budget.built -= len(value)
            if budget.built < 0:
                raise _Refused(f"the template builds more than {MAX_BUILT_TOTAL:,} characters")
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _Refused(f"the template builds a number beyond {MAX_INT_BITS} bits")
    return value


def _check_fits(estimate: int) -> None:
    if estimate > MAX_BUILT:
        raise _Refused(f"the template would build a value beyond {MAX_BUILT:,} characters")


def _check_arguments(args: Iterable[Any], *, numbers: bool = True) -> int:
    """Refuses arguments too big to be given to a filter or a method (a width of ten
    million, a list that prints as gigabytes); the largest argument's size."""
    largest = 0
    for arg in args:
        if numbers and isinstance(arg, int) and not isinstance(arg, bool):
            if abs(arg) > MAX_BUILT:
                raise _Refused(f"the number {arg} is beyond the limit of {MAX_BUILT:,}")
            largest = max(largest, abs(arg))
        size = _size_of(arg)
        if size > MAX_BUILT:
            raise _Refused(f"the template would build a value beyond {MAX_BUILT:,} characters")
        largest = max(largest, size)
    return largest


_NUMBER = re.compile(r"\d+")


_DYNAMIC_WIDTH = re.compile(r"\*|\{[^{}]*\{")


def _check_format(fmt: str, args: Iterable[Any]) -> None:
    """A format string (``%`` or ``str.format``) whose widths and repeated fields stay
    within the limit (a number given as a ``*`` or ``{:{w}}`` width counts as one)."""
    values = list(args)
    if _DYNAMIC_WIDTH.search(fmt):
        largest = _check_arguments(values)
    else:
        largest = max((_size_of(v) for v in values), default=0)
        _check_fits(largest)
    numbers = _NUMBER.findall(fmt)
    if any(len(n) >= 12 for n in numbers):
        raise _Refused("the format string has a width beyond the limit")
    widths = sum(int(n) for n in numbers)
    fields = fmt.count("%") + fmt.count("{")
    _check_fits(len(fmt) + widths + fields * largest)


def _estimate_call(
    name: str, target: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    """Refuses, before it runs, a string operation whose result would be too big."""
    if name == "join" and isinstance(target, list | tuple):
        separator = args[0] if args else kwargs.get("d", "")
        items = target
        _check_fits(_size_of(items) + len(items) * _size_of(separator))
        return
    if not isinstance(target, str):
        return
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = target.count(old) if old else len(target) + 1
        _check_fits(len(target) + count * max(0, len(new) - len(old)))
    elif name == "join":
        items = args[0] if args else ()
        if isinstance(items, str):
            _check_fits(len(items) * (1 + len(target)))
        elif isinstance(items, list | tuple):  # iterators are made lists before (`_listed`)
            _check_fits(_size_of(items) + len(items) * len(target))
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _check_fits(len(target) + target.count("\t") * abs(size))
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        width_chars = abs(width) if isinstance(width, int) else len(str(width))
        _check_fits(len(target) + (target.count("\n") + 1) * width_chars)
    elif name == "wordwrap":
        width = args[0] if args else kwargs.get("width", 79)
        wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring") or "\n"
        breaks = (
            len(target) // max(1, width if isinstance(width, int) else 1)
            + target.count(" ")
            + target.count("\n")
            + 1
        )
        _check_fits(len(target) + breaks * len(str(wrap)))
    elif name == "format":
        _check_format(target, [*args, *kwargs.values()])


def _listed(name: str, args: tuple[Any, ...], at: int) -> tuple[Any, ...]:
    """``args`` with the sequence a ``join`` joins made a list (to be sized first)."""
    if (
        name == "join"
        and len(args) > at
        and isinstance(args[at], Iterable)
        and not isinstance(args[at], str | list | tuple)
    ):
        items = _check_built(list(args[at]))
        return (*args[:at], items, *args[at + 1 :])
    return args


_NOT_PRINTING = frozenset(
    {
        "length", "count", "first", "last", "default", "d", "list", "sort", "unique",
        "reverse", "batch", "slice", "map", "select", "reject", "selectattr",
        "rejectattr", "groupby", "sum", "min", "max", "abs", "int", "float", "round",
        "attr", "dictsort", "items", "random", "boolean",
    }
)  # fmt: skip


def _checked_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that spends an operation, refuses arguments too big or a result that
    would be, and checks what it built."""
    pass_arg = getattr(fn, "jinja_pass_arg", None)
    # filters that never print their input whole need not size it first (walking a long
    # list for ``|length`` in a loop would cost more than the filter)
    counting_only = name in _NOT_PRINTING

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _spend()
        args = _listed(name, args, 1 if pass_arg is not None else 0)
        data = args[1:] if pass_arg is not None else args
        if data and not counting_only:
            _check_arguments(data[:1], numbers=False)
        _check_arguments([*data[1:], *kwargs.values()])
        if data:
            _estimate_call(name, data[0], tuple(data[1:]), kwargs)
        return _check_built(fn(*args, **kwargs))

    return checked


def _bounded_range(*args: int) -> range:
    built = range(*args)
    if len(built) > MAX_RANGE:
        raise SecurityError(f"range() is beyond the limit of {MAX_RANGE:,}")
    return built


class _Counted:
    """What the compiled template calls (as the internal filters ``tenure_*``, which
    compile to plain calls, without the sandbox's per-call checks)."""

    @staticmethod
    def iterate(iterable: Any) -> Iterator[Any]:
        """A ``{% for %}`` loop's items, each spending an operation."""
        budget = _BUDGET.get()
        if budget is None:
            yield from iterable
            return
        for item in iterable:
            budget.spend()
            yield item

    @staticmethod
    def emit(value: Any) -> Any:
        """An output statement's value, counted against the characters one render may
        emit (a ``{% set %}`` block or a macro collects its output before it is checked
        as a value)."""
        if isinstance(value, str):
            size = len(value)
        else:
            if isinstance(value, TemplateFunction):
                str(value)  # refuses, with the function's name
            if isinstance(value, Iterator):
                raise _Refused("a sequence cannot be printed as is: add |list or |join")
            size = _size_of(value, MAX_EMITTED_CHARS)
        budget = _BUDGET.get()
        if budget is not None:
            budget.spend()
            budget.emitted -= size
            if budget.emitted < 0:
                raise _Refused(
                    f"the template emits more than {MAX_EMITTED_CHARS:,} characters in all"
                )
        return value


def _call(name: str, arg: nodes.Expr, lineno: int) -> nodes.Filter:
    """``arg|name``: an internal filter compiles to a direct call."""
    call = nodes.Filter(arg, name, [], [], None, None)
    call.set_lineno(lineno)
    return call


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with the budget of the module comment: immutable builtins (no
    ``list.append`` / ``dict.update`` doubling a value in a loop), every loop, output and
    ``~`` routed through :class:`_Counted`, every call, lookup, filter and ``+ * ** %``
    checked."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def concat(self, parts: Iterable[str]) -> str:
        collected = list(parts)
        _check_fits(sum(len(p) for p in collected))
        return "".join(collected)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = _call("tenure_iterate", cast(nodes.Expr, loop.iter), loop.lineno)
        # literal text is counted where output is collected (a macro, a ``{% set %}`` or
        # ``{% filter %}`` block, a ``{% call %}``); elsewhere it streams out, and the
        # output limit counts it
        captured = {
            id(output)
            for kind in (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)
            for block in tree.find_all(kind)
            for output in block.find_all(nodes.Output)
        }
        for output in list(tree.find_all(nodes.Output)):
            output.nodes = [
                child
                if isinstance(child, nodes.TemplateData) and id(output) not in captured
                else _call(
                    "tenure_emit",
                    nodes.MarkSafeIfAutoescape(nodes.Const(child.data))
                    if isinstance(child, nodes.TemplateData)
                    else child,
                    child.lineno or output.lineno,
                )
                for child in output.nodes
            ]
        for concat in list(tree.find_all(nodes.Concat)):
            # ``a ~ b ~ …`` becomes ``tenure_concat((a, b, …))``: sized before joining
            operands = nodes.Tuple(concat.nodes, "load", lineno=concat.lineno)
            call = _call("tenure_concat", operands, concat.lineno)
            concat.__class__ = nodes.Filter  # type: ignore[assignment]
            concat.__dict__.update(call.__dict__)
        return tree

    def tenure_concat(self, operands: tuple[Any, ...]) -> str:
        """``a ~ b``: every operand and the result within the size limit."""
        for operand in operands:
            if isinstance(operand, TemplateFunction):
                str(operand)
        _check_fits(sum(_size_of(o) for o in operands))
        return (markup_join if self.autoescape else str_join)(operands)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        if not isinstance(__obj, TemplateFunction):
            args = _listed(getattr(__obj, "__name__", ""), args, 0)
            _check_arguments([*args, *kwargs.values()])
            _estimate_call(
                getattr(__obj, "__name__", ""), getattr(__obj, "__self__", None), args, kwargs
            )
        return _check_built(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, [*args, *kwargs.values()])
            return _check_built(wrapped(*args, **kwargs))  # type: ignore[no-any-return]

        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        # ``context.items`` is the request's "items", not dict.items: keys come first
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        _spend()
        if operator_ == "*":
            sized = [x for x in (left, right) if isinstance(x, str | list | tuple)]
            counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
            if sized and counts:
                _check_fits(len(sized[0]) * abs(counts[0]))
            elif len(counts) == 2 and sum(c.bit_length() for c in counts) > MAX_INT_BITS:
                raise _Refused(f"the template builds a number beyond {MAX_INT_BITS} bits")
        elif operator_ == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("the exponent is beyond the limit")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() * max(right, 0) > MAX_INT_BITS
            ):
                raise _Refused(f"the template builds a number beyond {MAX_INT_BITS} bits")
        elif operator_ == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_fits(len(left) + len(right))
        elif operator_ == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else [right])
        return _check_built(super().call_binop(context, operator_, left, right))


def _environment(*, autoescape: bool) -> _LimitedSandbox:
    env = _LimitedSandbox(
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace beyond what we add
    env.globals["range"] = TemplateFunction("range", _bounded_range)
    env.filters = {name: _checked_filter(name, fn) for name, fn in env.filters.items()}
    # what _parse wraps loops, outputs and ``~`` in (not checked: they are the checks)
    env.filters["tenure_iterate"] = _Counted.iterate
    env.filters["tenure_emit"] = _Counted.emit
    env.filters["tenure_concat"] = env.tenure_concat
    return env


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


class TemplateCache:
    """Compiled sources, by (environment, source); least recently used go first."""

    def __init__(self, size: int = 2_048) -> None:
        self._size = size
        self._compiled: OrderedDict[tuple[bool, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, *, html: bool) -> Any:
        with self._lock:  # renders run in worker threads
            return self._get(source, html=html)

    def _get(self, source: str, *, html: bool) -> Any:
        key = (html, source)
        found = self._compiled.get(key)
        if found is not None:
            self._compiled.move_to_end(key)
            return found
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"the template is longer than {MAX_SOURCE_CHARS} characters")
        try:
            found = (_HTML if html else _TEXT).from_string(source)
        except JinjaTemplateError as exc:
            raise TemplateError(f"the template does not compile: {_describe(exc)}") from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise TemplateError(f"the template does not compile: {type(exc).__name__}") from None
        self._compiled[key] = found
        if len(self._compiled) > self._size:
            self._compiled.popitem(last=False)
        return found


DEFAULT_CACHE = TemplateCache()


def render_source(
    source: str,
    context: Mapping[str, Any],
    *,
    html: bool = False,
    field: str = "text",
    cache: TemplateCache = DEFAULT_CACHE,
    max_output_chars: int = MAX_OUTPUT_CHARS,
    max_seconds: float = MAX_RENDER_SECONDS,
) -> str:
    """One source rendered within the limits; :class:`TemplateError` otherwise."""
    template = cache.get(source, html=html)
    parts: list[str] = []
    size = 0
    token = _BUDGET.set(_Budget(max_seconds))
    try:
        for chunk in template.generate(_safe_context(context)):
            size += len(chunk)
            if size > max_output_chars:
                raise TemplateError(f"{field}: the output is longer than {max_output_chars} chars")
            parts.append(chunk)
    except TemplateError:
        raise
    except _Refused as exc:
        raise TemplateError(f"{field}: {exc}") from None
    except MemoryError:
        raise TemplateError(f"{field}: the template needs too much memory") from None
    except SecurityError as exc:
        raise TemplateError(f"{field}: not allowed in a template: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(f"{field}: {_describe(exc)}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise TemplateError(f"{field}: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise TemplateError(f"{field}: the template recurses too deeply") from None
    finally:
        _BUDGET.reset(token)
    return "".join(parts)


def _describe(exc: JinjaTemplateError) -> str:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if line else ""
    return f"{exc.message or type(exc).__name__}{where}"
