"""Every service's settings, checked before anything starts, and documented in one place.

- :func:`check` validates the settings of the given services (and ``tenure dev``'s)
  from the environment: one line per bad value, naming the variable and what is
  accepted; and warns about ``TENURE_*`` variables no setting reads, with the
  nearest valid name.
- :func:`reference` writes docs/settings.md from the settings classes
  (``tenure settings-doc``); a test keeps the file current.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from tenure.services import SERVICES

#: ``TENURE_*`` variables read outside the settings classes
OTHER_VARIABLES = {
    "TENURE_HOME": "where `tenure dev` keeps its state (default `./.tenure`)",
}
#: variables of the tooling (tests, benchmarks), and internal ones: never warned about
_TOOLING = re.compile(r"TENURE_(TEST|BENCH|NPM|SCHEMATHESIS|UPDATE)_\w*|TENURE_SERVICE")


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    default: str
    meaning: str


def settings_classes(
    names: Iterable[str] = SERVICES, *, dev: bool = True
) -> dict[str, type[BaseSettings]]:
    """Each service's settings class (``services.NAME.settings``), and ``tenure dev``'s."""
    from shared.settings import ServiceSettings

    found: dict[str, type[BaseSettings]] = {}
    for name in names:
        module = importlib.import_module(f"services.{name}.settings")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, ServiceSettings)
                and value is not ServiceSettings
            ):
                found[name] = value
    if dev:
        from tenure.dev_settings import DevSettings

        found["dev"] = DevSettings
    return found


def _prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", "")).upper()


def variables(cls: type[BaseSettings]) -> Iterator[Variable]:
    prefix = _prefix(cls)
    comments = _comments(cls)
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            group_comments = _comments(annotation)
            for sub, sub_info in annotation.model_fields.items():
                yield _variable(
                    f"{prefix}{name}_{sub}".upper(), sub_info, group_comments.get(sub, "")
                )
        else:
            yield _variable(f"{prefix}{name}".upper(), info, comments.get(name, ""))


def _variable(name: str, info: FieldInfo, comment: str) -> Variable:
    meaning = info.description or comment
    meaning = " ".join(meaning.replace("``", "`").split())
    return Variable(name, _type_name(info.annotation), _default(info), meaning)


def _comments(cls: type) -> dict[str, str]:
    """``#:`` comments above each field of a class and of its bases (the group's
    ``AdminApiGroup``), from their source."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.partition(".")[0] in ("shared", "services", "tenure"):
            found.update(_own_comments(klass))
    return found


def _own_comments(cls: type) -> dict[str, str]:
    """``#:`` comments above each field of one class, from its source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:", stripped)
        if field and pending and line.startswith("    ") and not stripped.startswith("def "):
            found[field.group(1)] = " ".join(pending)
        pending = []
    return found


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [_type_name(arg) for arg in get_args(annotation) if arg is not type(None)]
        return " \\| ".join(parts)
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if value is None or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def known_variables() -> set[str]:
    names = {v.name for cls in settings_classes().values() for v in variables(cls)}
    return names | set(OTHER_VARIABLES) | {"TENURE_DATABASE_URL"}


def check(
    services: Iterable[str],
    environ: Mapping[str, str] = os.environ,
    *,
    unknown: bool = True,
    dev: bool = False,
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``: bad values of the services' settings (and ``tenure dev``'s
    with ``dev``), unknown variables (with ``unknown``).

    The settings classes read ``os.environ``; ``environ`` names the values in messages."""
    errors: list[str] = []
    classes = settings_classes(services, dev=dev)
    for cls in classes.values():
        try:
            cls()
        except ValidationError as exc:
            for error in exc.errors():
                line = _error_line(cls, error, environ)
                if line not in errors:
                    errors.append(line)
    warnings: list[str] = []
    if not unknown:
        return errors, warnings
    known = known_variables()
    for name in sorted(environ):
        if not name.startswith("TENURE_") or name in known or _TOOLING.fullmatch(name):
            continue
        nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        warnings.append(f"{name} is not a Tenure setting and is ignored{hint}")
    return errors, warnings


def _error_line(cls: type[BaseSettings], error: Any, environ: Mapping[str, str]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    message = str(error.get("msg", "invalid"))
    if not loc:
        return f"{cls.__name__}: {message}"
    name = (_prefix(cls) + "_".join(loc[:2])).upper()
    if name not in environ and name == "TENURE_DATABASE_URL" and "DATABASE_URL" in environ:
        name = "DATABASE_URL"
    shown = environ.get(name)
    if shown is None:
        return f"{name}: {message}"
    if _is_secret(cls, loc):
        return f"{name} (value hidden): {message}"
    return f"{name}={shown}: {message}"


def _is_secret(cls: type[BaseModel], loc: list[str]) -> bool:
    """Whether the field at ``loc`` holds a secret (its value is never printed)."""
    model: Any = cls
    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return False
        model = info.annotation
    return bool(SecretStr in (model, *get_args(model)))


def reference() -> str:
    """docs/settings.md: every setting of every service, from the settings classes."""
    lines = [
        "# Settings reference",
        "",
        "<!-- generated by `tenure settings-doc` from the settings classes; do not edit -->",
        "",
        "Every setting is an environment variable. A group and its field are joined by",
        "one underscore (`TENURE_KAFKA_BOOTSTRAP_SERVERS`). The shared ones (Kafka,",
        "database, HTTP, logging) apply to every service; `DATABASE_URL` alone is",
        "honoured when `TENURE_DATABASE_URL` is not set. `tenure dev` and `tenure serve`",
        "check them all before anything starts: a bad value is named with what is",
        "accepted, and an unknown `TENURE_*` variable is warned about with the nearest",
        "valid name.",
        "",
    ]
    classes = settings_classes()
    shared: set[str] = set.intersection(
        *({v.name for v in variables(cls)} for name, cls in classes.items() if name != "dev")
    )
    sections: list[tuple[str, list[Variable]]] = []
    first = next(iter(classes.values()))
    sections.append(("Every service", [v for v in variables(first) if v.name in shared]))
    for name, cls in classes.items():
        title = "`tenure dev`" if name == "dev" else f"{name}"
        own = [v for v in variables(cls) if v.name not in shared]
        sections.append((title, own))
    sections[-1][1].extend(Variable(n, "path", "", m) for n, m in OTHER_VARIABLES.items())
    for title, rows in sections:
        lines += [
            f"## {title}",
            "",
            "| variable | type | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for v in rows:
            meaning = v.meaning.replace("|", "\\|")
            lines.append(f"| `{v.name}` | {v.type} | {v.default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
