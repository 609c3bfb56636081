"""A journey as a Mermaid flowchart, each step labelled with its live counts."""

from __future__ import annotations

from collections.abc import Mapping

from services.journey.definition import (
    BranchStep,
    EventTrigger,
    ExitStep,
    JourneyDefinition,
    SendStep,
    SplitStep,
    Step,
    UpdateTraitStep,
    WaitForEngagementStep,
    WaitForEventStep,
    WaitStep,
    WaitUntilStep,
)

_EMPTY = {"entered": 0, "waiting": 0, "converted": 0, "exited": 0}


def _text(value: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return value.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _summary(step: Step) -> str:
    match step:
        case SendStep():
            return f"send {step.template_id} via {' / '.join(c.value for c in step.channels)}"
        case WaitStep():
            return f"wait {_duration(step.duration.total_seconds())}"
        case WaitUntilStep():
            days = f" on {','.join(map(str, step.weekdays))}" if step.weekdays else ""
            return f"wait until {step.at.strftime('%H:%M')} local{days}"
        case WaitForEventStep():
            return f"wait for {step.event} ({_duration(step.timeout.total_seconds())})"
        case WaitForEngagementStep():
            return (
                f"wait until {step.send_step} {step.engagement} "
                f"({_duration(step.timeout.total_seconds())})"
            )
        case BranchStep():
            return "branch"
        case SplitStep():
            return "split " + " / ".join(f"{v.name} {v.weight:g}" for v in step.variants)
        case UpdateTraitStep():
            return "set " + ", ".join(sorted(step.traits))
        case ExitStep():
            return "exit"
    return step.type  # pragma: no cover


def _shape(step: Step, label: str) -> str:
    if isinstance(step, BranchStep | SplitStep):
        return "{" + f'"{label}"' + "}"
    if isinstance(step, WaitStep | WaitUntilStep | WaitForEventStep | WaitForEngagementStep):
        return "{{" + f'"{label}"' + "}}"
    if isinstance(step, ExitStep):
        return "([" + f'"{label}"' + "])"
    return "[" + f'"{label}"' + "]"


def _edges(step: Step) -> list[tuple[str, str]]:
    match step:
        case SendStep():
            return [("", step.next)] + ([("failed", step.on_failure)] if step.on_failure else [])
        case WaitForEventStep():
            return [(step.event, step.next), ("timeout", step.on_timeout)]
        case WaitForEngagementStep():
            return [(step.engagement, step.next), ("timeout", step.on_timeout)]
        case BranchStep():
            return [(f"case {i + 1}", c.next) for i, c in enumerate(step.cases)] + [
                ("otherwise", step.otherwise)
            ]
        case SplitStep():
            return [(v.name, v.next) for v in step.variants]
        case ExitStep():
            return []
    return [("", step.next)]


def mermaid(definition: JourneyDefinition, counts: Mapping[str, Mapping[str, int]]) -> str:
    """``flowchart TD``: the triggers, then each step with entered / waiting /
    converted / exited counts (over every version; a step another version has and
    this one lacks is not drawn)."""
    node = {step.id: f"s{i}" for i, step in enumerate(definition.steps)}
    triggers = " or ".join(
        t.event if isinstance(t, EventTrigger) else f"segment {t.segment_id} {t.on}"
        for t in definition.triggers
    )
    whole = counts.get("", _EMPTY)
    start_label = f"{_text(triggers)}<br/>entered {whole.get('entered', 0)}"
    lines = ["flowchart TD", f'    start(["{start_label}"])']
    for step in definition.steps:
        c = counts.get(step.id, _EMPTY)
        label = _text(f"{step.id}: {_summary(step)}")
        label += (
            f"<br/>entered {c.get('entered', 0)} · waiting {c.get('waiting', 0)}"
            f" · converted {c.get('converted', 0)} · exited {c.get('exited', 0)}"
        )
        lines.append(f"    {node[step.id]}{_shape(step, label)}")
    lines.append(f"    start --> {node[definition.first_step]}")
    for step in definition.steps:
        for label, target in _edges(step):
            arrow = f" -- {_text(label)} --> " if label else " --> "
            lines.append(f"    {node[step.id]}{arrow}{node[target]}")
    if whole.get("waiting", 0) or whole.get("converted", 0):
        lines.append(
            f'    goal(["goal window: waiting {whole.get("waiting", 0)}'
            f' · converted {whole.get("converted", 0)}"])'
        )
    return "\n".join(lines) + "\n"
