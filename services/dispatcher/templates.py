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

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.dispatcher.sandbox import (
    DEFAULT_CACHE,
    MAX_OUTPUT_CHARS,
    MAX_RENDER_SECONDS,
    MAX_SOURCE_CHARS,
    TemplateCache,
    TemplateError,
    TemplateFunction,
    render_source,
)
from shared.events.channels import Channel
from shared.validation import SafeModel

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_SOURCE_CHARS",
    "TemplateCache",
    "TemplateError",
    "TemplateFunction",
    "render_source",
]


Source = Annotated[str, Field(max_length=MAX_SOURCE_CHARS)]
Locale = Annotated[str, Field(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9_-]+$")]


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


class TemplateDefinition(SafeModel):
    """The document stored per template version (nothing storage refuses in it)."""

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


#: ``href="http…"`` in rendered HTML, whose URL the click tracker rewrites
_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)


#: ``href="javascript:…"`` (and ``data:``, ``vbscript:``), dropped from every message
_SCRIPT_HREF = re.compile(
    r"""(href\s*=\s*)(["']?)\s*(?:javascript|data|vbscript)\s*:[^"'>\s]*\2""", re.IGNORECASE
)
#: the host of an absolute http(s) URL written in a template's source
_SOURCE_URL = re.compile(r"""https?://([A-Za-z0-9.-]+)""", re.IGNORECASE)


def link_hosts(variant: Variant) -> frozenset[str]:
    """The hosts of the http(s) URLs written in ``variant``'s sources: the only hosts a
    click link may be signed for. A URL that comes whole from a customer's traits (or
    any data) is never turned into a signed redirect on the tracking domain — an open
    redirect a phisher could use for 90 days (issue 21)."""
    return frozenset(
        host.lower().rstrip(".")
        for _, source, _ in _sources(variant)
        for host in _SOURCE_URL.findall(source)
    )


def _host(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    return (parts.hostname or "").rstrip(".") or None


def rewrite_links(
    html: str, track: Callable[[str], str], *, hosts: Collection[str] | None = None
) -> str:
    """Every absolute http(s) ``href`` in ``html`` replaced by ``track(url)`` — only those
    to one of ``hosts`` when it is given (see :func:`link_hosts`); every ``javascript:``,
    ``data:`` or ``vbscript:`` href replaced by ``#``."""
    import html as html_lib

    def replace(match: re.Match[str]) -> str:
        url = html_lib.unescape(match.group(3))
        if hosts is not None and _host(url) not in hosts:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{html_lib.escape(track(url))}{match.group(2)}"

    html = _SCRIPT_HREF.sub(lambda m: f'{m.group(1)}"#"', html)
    return _HREF.sub(replace, html)


def _guarded_link(link: Any, hosts: frozenset[str]) -> TemplateFunction:
    """``link(url)`` that signs only URLs to a host of the template's source; any other
    URL is given back as it is (untracked, and no redirect through us)."""

    def guarded(url: Any) -> Any:
        text = str(url)
        if _host(text) in hosts:
            return link(text)
        if _host(text) is None and text.strip().lower().startswith(("javascript", "data", "vb")):
            return "#"
        return text

    return TemplateFunction("link", guarded)


def render_variant(
    variant: Variant,
    context: Mapping[str, Any],
    *,
    cache: TemplateCache = DEFAULT_CACHE,
) -> Rendered:
    """Every field of ``variant`` rendered with ``context``; :class:`TemplateError` on the
    first that fails (the message names the field). A ``link`` in the context signs only
    URLs to hosts written in the variant's sources (:func:`link_hosts`)."""
    if "link" in context and callable(context["link"]):
        context = {**context, "link": _guarded_link(context["link"], link_hosts(variant))}

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
                DEFAULT_CACHE.get(source, html=html)
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
