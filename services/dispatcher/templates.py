"""Message templates: what they hold per channel and locale, and their sandboxed rendering.

A template is a versioned JSON document (:class:`TemplateDefinition`) with one
variant per channel and locale. Its fields are Jinja2 templates rendered in a
:class:`~jinja2.sandbox.SandboxedEnvironment` (no attribute access to Python
internals, no ``import``), with limits on the size of a source, the size of an
output and the time spent rendering, and with ``StrictUndefined``: a template that
reads a value the customer does not have fails with the name of that value, unless
it says ``| default(...)``. Every failure is a :class:`TemplateError` with a clear
message, which fails that one message (outcome ``failed``/``template_error``),
never the consumer.
"""

from __future__ import annotations

import operator
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from jinja2 import StrictUndefined
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.channels import Channel

#: characters of one field's source
MAX_SOURCE_CHARS = 64_000
#: characters of one rendered field
MAX_OUTPUT_CHARS = 256_000
#: seconds one field may take to render
MAX_RENDER_SECONDS = 0.5
#: the largest sequence or number an expression may build (``"x" * n``, ``n ** m``)
_MAX_BUILT = 100_000

Source = Annotated[str, Field(max_length=MAX_SOURCE_CHARS)]
Locale = Annotated[str, Field(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9_-]+$")]


class TemplateError(Exception):
    """The template cannot give this message; ``str()`` says why, for the outcome."""


class Variant(BaseModel):
    """One channel's content in one locale (``default`` when the locale matches none).

    Which fields a channel uses: email ``subject``, ``text``, ``html``; push ``title``,
    ``text``, ``url``; WhatsApp ``whatsapp_template`` (an approved template's name) with
    ``whatsapp_language`` and ``whatsapp_parameters`` (each a Jinja2 source), else
    ``text`` inside the 24-hour window; Messenger ``text``; webhook ``text`` and
    ``data`` (each value a Jinja2 source).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel
    locale: Locale = "default"
    subject: Source | None = None
    text: Source | None = None
    html: Source | None = None
    title: Source | None = None
    url: Source | None = None
    whatsapp_template: str | None = Field(default=None, max_length=512)
    whatsapp_language: str | None = Field(default=None, max_length=35)
    whatsapp_parameters: list[Source] = Field(default_factory=list, max_length=20)
    data: dict[str, Source] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _has_content(self) -> Variant:
        if self.channel is Channel.EMAIL and (not self.subject or not (self.text or self.html)):
            raise ValueError("an email variant needs subject and text or html")
        if self.channel is Channel.PUSH and not (self.title and self.text):
            raise ValueError("a push variant needs title and text")
        if self.channel is Channel.WHATSAPP and not (self.whatsapp_template or self.text):
            raise ValueError("a whatsapp variant needs whatsapp_template or text")
        if self.channel is Channel.MESSENGER and not self.text:
            raise ValueError("a messenger variant needs text")
        return self


class TemplateDefinition(BaseModel):
    """The document stored per template version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    #: the subscription topic a message of this template belongs to (a request may override)
    subscription_topic: str | None = Field(default=None, min_length=1, max_length=128)
    variants: list[Variant] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _distinct_variants(self) -> TemplateDefinition:
        keys = [(v.channel, v.locale.lower()) for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("two variants have the same channel and locale")
        return self

    def channels(self) -> set[Channel]:
        return {v.channel for v in self.variants}

    def variant(self, channel: Channel, locale: str | None) -> Variant | None:
        """The variant for ``locale`` (``fr-FR``, then ``fr``, then ``default``), else the
        channel's first."""
        candidates = [v for v in self.variants if v.channel is channel]
        if not candidates:
            return None
        by_locale = {v.locale.lower(): v for v in candidates}
        wanted = (locale or "").replace("_", "-").lower()
        for key in (wanted, wanted.split("-")[0], "default"):
            if key and key in by_locale:
                return by_locale[key]
        return candidates[0]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A variant rendered for one customer: the fields its channel uses."""

    channel: Channel
    locale: str
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    title: str | None = None
    url: str | None = None
    whatsapp_template: str | None = None
    whatsapp_language: str | None = None
    whatsapp_parameters: tuple[str, ...] = ()
    data: Mapping[str, str] | None = None


class _LimitedSandbox(SandboxedEnvironment):
    """A sandbox that also refuses to build huge strings, lists or numbers."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``context.items`` is the request's "items", not dict.items: keys come first
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            sizes = [len(x) for x in (left, right) if isinstance(x, str | list | tuple)]
            counts = [x for x in (left, right) if isinstance(x, int)]
            if sizes and counts and sizes[0] * abs(counts[0]) > _MAX_BUILT:
                raise SecurityError("the expression builds a value beyond the size limit")
            return operator.mul(left, right)
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("the exponent is beyond the limit")
            return operator.pow(left, right)
        return super().call_binop(context, operator_, left, right)


def _environment(*, autoescape: bool) -> _LimitedSandbox:
    env = _LimitedSandbox(
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace beyond what we add
    env.globals["range"] = _bounded_range
    return env


def _bounded_range(*args: int) -> range:
    built = range(*args)
    if len(built) > 10_000:
        raise SecurityError("range() is beyond the limit of 10,000")
    return built


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


class TemplateCache:
    """Compiled sources, by (environment, source); least recently used go first."""

    def __init__(self, size: int = 2_048) -> None:
        self._size = size
        self._compiled: OrderedDict[tuple[bool, str], Any] = OrderedDict()

    def get(self, source: str, *, html: bool) -> Any:
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
        self._compiled[key] = found
        if len(self._compiled) > self._size:
            self._compiled.popitem(last=False)
        return found


_DEFAULT_CACHE = TemplateCache()


def render_source(
    source: str,
    context: Mapping[str, Any],
    *,
    html: bool = False,
    field: str = "text",
    cache: TemplateCache = _DEFAULT_CACHE,
    max_output_chars: int = MAX_OUTPUT_CHARS,
    max_seconds: float = MAX_RENDER_SECONDS,
) -> str:
    """One source rendered within the limits; :class:`TemplateError` otherwise."""
    template = cache.get(source, html=html)
    started = time.monotonic()
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > max_output_chars:
                raise TemplateError(f"{field}: the output is longer than {max_output_chars} chars")
            if time.monotonic() - started > max_seconds:
                raise TemplateError(f"{field}: rendering took longer than {max_seconds}s")
            parts.append(chunk)
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"{field}: not allowed in a template: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(f"{field}: {_describe(exc)}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise TemplateError(f"{field}: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise TemplateError(f"{field}: the template recurses too deeply") from None
    return "".join(parts)


def _describe(exc: JinjaTemplateError) -> str:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if line else ""
    return f"{exc.message or type(exc).__name__}{where}"


#: ``href="http…"`` in rendered HTML, whose URL the click tracker rewrites
_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)


def rewrite_links(html: str, track: Callable[[str], str]) -> str:
    """Every absolute http(s) ``href`` in ``html`` replaced by ``track(url)``."""
    import html as html_lib

    def replace(match: re.Match[str]) -> str:
        url = html_lib.unescape(match.group(3))
        return f"{match.group(1)}{match.group(2)}{html_lib.escape(track(url))}{match.group(2)}"

    return _HREF.sub(replace, html)


def render_variant(
    variant: Variant,
    context: Mapping[str, Any],
    *,
    cache: TemplateCache = _DEFAULT_CACHE,
) -> Rendered:
    """Every field of ``variant`` rendered with ``context``; :class:`TemplateError` on the
    first that fails (the message names the field)."""

    def text(source: str | None, field: str) -> str | None:
        if source is None:
            return None
        return render_source(source, context, field=field, cache=cache)

    html = (
        None
        if variant.html is None
        else render_source(variant.html, context, html=True, field="html", cache=cache)
    )
    return Rendered(
        channel=variant.channel,
        locale=variant.locale,
        subject=_one_line(text(variant.subject, "subject")),
        text=text(variant.text, "text"),
        html=html,
        title=_one_line(text(variant.title, "title")),
        url=text(variant.url, "url"),
        whatsapp_template=variant.whatsapp_template,
        whatsapp_language=variant.whatsapp_language,
        whatsapp_parameters=tuple(
            render_source(p, context, field=f"whatsapp_parameters[{i}]", cache=cache)
            for i, p in enumerate(variant.whatsapp_parameters)
        ),
        data={
            key: render_source(value, context, field=f"data.{key}", cache=cache)
            for key, value in variant.data.items()
        }
        or None,
    )


def _one_line(value: str | None) -> str | None:
    """Header-like fields (a subject, a title) never carry line breaks."""
    return None if value is None else " ".join(value.split())


def check_compiles(definition: TemplateDefinition) -> list[str]:
    """The compile errors of every source of ``definition`` (empty: it compiles)."""
    problems: list[str] = []
    for index, variant in enumerate(definition.variants):
        for field, source, html in _sources(variant):
            try:
                _DEFAULT_CACHE.get(source, html=html)
            except TemplateError as exc:
                problems.append(f"variants[{index}].{field}: {exc}")
    return problems


def _sources(variant: Variant) -> Iterable[tuple[str, str, bool]]:
    for field in ("subject", "text", "title", "url"):
        source = getattr(variant, field)
        if source is not None:
            yield field, source, False
    if variant.html is not None:
        yield "html", variant.html, True
    for i, source in enumerate(variant.whatsapp_parameters):
        yield f"whatsapp_parameters[{i}]", source, False
    for key, source in variant.data.items():
        yield f"data.{key}", source, False
