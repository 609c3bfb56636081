"""Journey metrics, declared once; never a label per customer, journey or run."""

from prometheus_client import Counter, Histogram

EVENTS_SKIPPED = Counter(
    "events_skipped",
    "Consumed customer events no journey reads (no trigger, goal or wait): dropped "
    "before any database work.",
    namespace="tenure",
    subsystem="journey",
)
REQUESTS_REPEATED = Counter(
    "requests_repeated",
    "Dispatch requests published again because no final outcome came within the bound.",
    namespace="tenure",
    subsystem="journey",
)
INPUTS_DUPLICATE = Counter(
    "inputs_duplicate",
    "Redelivered messages skipped by their id (events, segment changes, outcomes, decisions).",
    namespace="tenure",
    subsystem="journey",
)
ENTRIES_REFUSED = Counter(
    "entries_refused",
    "Triggers that started no run, by why: the entry rule, or not in the audience segment.",
    ["reason"],
    namespace="tenure",
    subsystem="journey",
)
RUN_EVENTS = Counter(
    "run_events",
    "journey.runs events emitted, by kind (entered, held_out, step_reached, waiting, "
    "converted, exited).",
    ["kind"],
    namespace="tenure",
    subsystem="journey",
)
MESSAGES_EMITTED = Counter(
    "messages_emitted",
    "Messages written to the outbox, by topic (dispatch.requests, journey.runs, "
    "customer.events trait updates).",
    ["topic"],
    namespace="tenure",
    subsystem="journey",
)
TIMERS_FIRED = Counter(
    "timers_fired",
    "Run timers fired (waits ended, timeouts, goal windows closed).",
    namespace="tenure",
    subsystem="journey",
)
TIMERS_DEFERRED = Counter(
    "timers_deferred",
    "Due timers left for the next round because their run was locked by another writer.",
    namespace="tenure",
    subsystem="journey",
)
TIMER_LAG_SECONDS = Histogram(
    "timer_lag_seconds",
    "How late a timer fired after it was due.",
    namespace="tenure",
    subsystem="journey",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
SWEEP_SECONDS = Histogram(
    "sweep_seconds",
    "Time to fire one chunk of due timers (one transaction).",
    namespace="tenure",
    subsystem="journey",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
