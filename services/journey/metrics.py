"""Journey metrics, declared once; never a label per customer, journey or run."""

from shared.metrics import Metrics

metrics = Metrics("journey")

EVENTS_SKIPPED = metrics.counter(
    "events_skipped",
    "Consumed customer events no journey reads (no trigger, goal or wait): dropped "
    "before any database work.",
)
REQUESTS_REPEATED = metrics.counter(
    "requests_repeated",
    "Dispatch requests published again because no final outcome came within the bound.",
)
INPUTS_DUPLICATE = metrics.counter(
    "inputs_duplicate",
    "Redelivered messages skipped by their id (events, segment changes, outcomes, decisions).",
)
ENTRIES_REFUSED = metrics.counter(
    "entries_refused",
    "Triggers that started no run, by why: the entry rule, or not in the audience segment.",
    ["reason"],
)
RUN_EVENTS = metrics.counter(
    "run_events",
    "journey.runs events emitted, by kind (entered, held_out, step_reached, waiting, "
    "converted, exited).",
    ["kind"],
)
MESSAGES_EMITTED = metrics.counter(
    "messages_emitted",
    "Messages written to the outbox, by topic (dispatch.requests, journey.runs, "
    "customer.events trait updates).",
    ["topic"],
)
TIMERS_FIRED = metrics.counter(
    "timers_fired", "Run timers fired (waits ended, timeouts, goal windows closed)."
)
TIMERS_DEFERRED = metrics.counter(
    "timers_deferred",
    "Due timers left for the next round because their run was locked by another writer.",
)
TIMER_LAG_SECONDS = metrics.histogram(
    "timer_lag_seconds",
    "How late a timer fired after it was due.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
SWEEP_SECONDS = metrics.histogram(
    "sweep_seconds",
    "Time to fire one chunk of due timers (one transaction).",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
