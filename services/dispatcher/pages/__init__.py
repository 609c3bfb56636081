"""The tracking pages (unsubscribe, preferences, survey), as Jinja2 templates with
autoescaping: every value a page shows is escaped, whatever it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

#: what every page answers with: never cached, never a referrer
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}

_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, *, title: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """``pages/<name>.html`` with ``title`` and ``values``, as an uncached HTML answer."""
    body = _PAGES.get_template(f"{name}.html").render(title=title, **values)
    return HTMLResponse(body, status_code=status_code, headers=dict(NO_STORE))
