# ruff: noqa: E501  (PromQL expressions read best on one line)
"""Writes the Grafana dashboards of deploy/grafana/dashboards/tenure-*.json (except the
overview, kept by hand): ``python deploy/grafana/generate.py``. A test checks the
committed files equal what this writes, and evaluates every query in a real
Prometheus.

Metric names follow the project's convention (``tenure_<service>_<what>``, counters
``_total``): the journey's ``tenure_journey_*`` and the dispatcher's
``tenure_dispatcher_*`` are read by name; a panel over a service that is not running
shows no data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def _panel(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "showPoints": "never",
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "range": True,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
        "panels": [],
    }


def _layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    x = y = 0
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > 24:
            if x:
                y += 8
            x = 0
        grid["x"], grid["y"] = x, y
        if panel["type"] == "row":
            y += 1
        else:
            x += grid["w"]
    return panels


def _dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    panels: list[dict[str, Any]],
    time_from: str = "now-6h",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tenure"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 41,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "type": "dashboards",
                "tags": ["tenure"],
                "asDropdown": True,
                "title": "Tenure",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": variables},
        "panels": _layout(panels),
    }


JOB = _variable("job", "Service", "label_values(up, job)")
JOURNEY = _variable(
    "journey", "Journey", "label_values(tenure_metrics_funnel_messages_total, journey)"
)
R = "$__rate_interval"


def pipeline() -> dict[str, Any]:
    return _dashboard(
        "tenure-pipeline",
        "Tenure pipeline health",
        "For SRE: is every service up, keeping up, and losing nothing? Consumer lag per group, "
        "dead letters, outbox and timer backlogs, publish and provider failures, HTTP errors.",
        [JOB],
        [
            _row("Services"),
            _panel(
                "Targets up",
                "1 when Prometheus scraped the service.",
                [('up{job=~"$job"}', "{{job}}")],
                kind="stat",
                width=8,
            ),
            _panel(
                "HTTP 5xx ratio",
                "Share of answers that were server errors, by service.",
                [
                    (
                        f'sum by (job) (rate(tenure_http_request_duration_seconds_count{{job=~"$job", status=~"5.."}}[{R}])) '
                        f'/ sum by (job) (rate(tenure_http_request_duration_seconds_count{{job=~"$job"}}[{R}]))',
                        "{{job}}",
                    )
                ],
                unit="percentunit",
                width=8,
            ),
            _panel(
                "HTTP p99 latency",
                "99th percentile of answer time by service.",
                [
                    (
                        f'histogram_quantile(0.99, sum by (le, job) (rate(tenure_http_request_duration_seconds_bucket{{job=~"$job"}}[{R}])))',
                        "{{job}}",
                    )
                ],
                unit="s",
                width=8,
            ),
            _row("Kafka"),
            _panel(
                "Consumed/s by group",
                "Messages consumed and committed.",
                [
                    (
                        f'sum by (group) (rate(tenure_kafka_consumed_messages_total{{job=~"$job"}}[{R}]))',
                        "{{group}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Consumer lag p99 by group",
                "Highwater minus committed offset after each batch.",
                [
                    (
                        f'histogram_quantile(0.99, sum by (le, group) (rate(tenure_kafka_consumer_batch_lag_messages_bucket{{job=~"$job"}}[{R}])))',
                        "{{group}}",
                    )
                ],
            ),
            _panel(
                "Dead letters",
                "Messages sent to a .dlq topic, by topic and group.",
                [
                    (
                        f'sum by (topic, group) (increase(tenure_kafka_dead_lettered_messages_total{{job=~"$job"}}[{R}]))',
                        "{{group}} {{topic}}",
                    )
                ],
            ),
            _panel(
                "Publish failures/s",
                "Messages the broker did not acknowledge.",
                [
                    (
                        f'sum by (job, topic) (rate(tenure_kafka_publish_failures_total{{job=~"$job"}}[{R}]))',
                        "{{job}} {{topic}}",
                    )
                ],
                unit="ops",
            ),
            _row("Backlogs"),
            _panel(
                "Outbox backlog",
                "Messages waiting in each service's outbox.",
                [('{__name__=~"tenure_.+_outbox_backlog_messages", job=~"$job"}', "{{job}}")],
            ),
            _panel(
                "Journey timer lag p99",
                "How late due journey timers fire (the timer backlog).",
                [
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(tenure_journey_timer_lag_seconds_bucket[{R}])))",
                        "p99",
                    )
                ],
                unit="s",
            ),
            _panel(
                "Journey timers fired/s",
                "Durable timers fired and deferred.",
                [
                    (f"sum(rate(tenure_journey_timers_fired_total[{R}]))", "fired"),
                    (f"sum(rate(tenure_journey_timers_deferred_total[{R}]))", "deferred"),
                ],
                unit="ops",
            ),
            _panel(
                "Dispatcher provider failures/s",
                "Messages that failed for good at a provider.",
                [
                    (
                        f"sum by (channel, kind) (rate(tenure_dispatcher_provider_failures_total[{R}]))",
                        "{{channel}} {{kind}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Metrics aggregated/s",
                "Messages folded into the KPI aggregates, and duplicates skipped.",
                [
                    (
                        f"sum by (topic) (rate(tenure_metrics_messages_aggregated_total[{R}]))",
                        "{{topic}}",
                    ),
                    (f"sum(rate(tenure_metrics_messages_duplicate_total[{R}]))", "duplicates"),
                ],
                unit="ops",
            ),
            _panel(
                "Segmenter events applied/s",
                "Customer events folded into profiles.",
                [(f"sum(rate(tenure_segmenter_events_applied_total[{R}]))", "applied")],
                unit="ops",
            ),
        ],
    )


def funnel() -> dict[str, Any]:
    sel = 'journey=~"$journey"'
    return _dashboard(
        "tenure-funnel",
        "Tenure campaign funnel",
        "Messages requested, sent, delivered, opened, clicked and converted per journey, step, "
        "variant and channel (tenure_metrics_funnel_messages_total), with the journey's runs and "
        "the dispatcher's outcomes.",
        [JOURNEY],
        [
            _row("Funnel"),
            _panel(
                "Funnel over the range",
                "Each step of the funnel summed over the dashboard's range.",
                [
                    (
                        f"sum by (metric) (increase(tenure_metrics_funnel_messages_total{{{sel}}}[$__range]))",
                        "{{metric}}",
                    )
                ],
                kind="bargauge",
                width=12,
            ),
            _panel(
                "Rates",
                "Opens, clicks and conversions per message sent.",
                [
                    (
                        f'sum(rate(tenure_metrics_funnel_messages_total{{{sel}, metric="{m}"}}[{R}])) / '
                        f'sum(rate(tenure_metrics_funnel_messages_total{{{sel}, metric="sent"}}[{R}]))',
                        m,
                    )
                    for m in ("delivered", "opened", "clicked", "converted", "unsubscribed")
                ],
                unit="percentunit",
            ),
            _panel(
                "Sent/s by journey and variant",
                "",
                [
                    (
                        f'sum by (journey, variant) (rate(tenure_metrics_funnel_messages_total{{{sel}, metric="sent"}}[{R}]))',
                        "{{journey}} {{variant}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Conversions/s by journey and step",
                "Goal events credited to the last message sent (last touch).",
                [
                    (
                        f'sum by (journey, step) (rate(tenure_metrics_funnel_messages_total{{{sel}, metric="converted"}}[{R}]))',
                        "{{journey}} {{step}}",
                    )
                ],
                unit="ops",
            ),
            _row("Journey and dispatcher"),
            _panel(
                "Journey run events/s by kind",
                "entered, held_out, step_reached, converted, exited…",
                [(f"sum by (kind) (rate(tenure_journey_run_events_total[{R}]))", "{{kind}}")],
                unit="ops",
            ),
            _panel(
                "Entries refused/s by reason",
                "",
                [
                    (
                        f"sum by (reason) (rate(tenure_journey_entries_refused_total[{R}]))",
                        "{{reason}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Dispatcher outcomes/s",
                "By status and reason (suppressions, deferrals, failures).",
                [
                    (
                        f"sum by (status, reason) (rate(tenure_dispatcher_outcomes_total[{R}]))",
                        "{{status}} {{reason}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Sent/s by channel",
                "Messages a provider accepted.",
                [
                    (
                        f"sum by (channel) (rate(tenure_dispatcher_messages_sent_total[{R}]))",
                        "{{channel}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Tracking events/s",
                "Opens, clicks, unsubscribes, surveys recorded by the dispatcher.",
                [
                    (
                        f"sum by (event) (rate(tenure_dispatcher_tracking_events_total[{R}]))",
                        "{{event}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Request to provider hand-off p95",
                "",
                [
                    (
                        f"histogram_quantile(0.95, sum by (le) (rate(tenure_dispatcher_request_to_handoff_seconds_bucket[{R}])))",
                        "p95",
                    )
                ],
                unit="s",
            ),
        ],
    )


def retention() -> dict[str, Any]:
    return _dashboard(
        "tenure-retention",
        "Tenure retention, churn and LTV",
        "Active customers, churn and lifetime value as the metrics service last computed them "
        "(every evaluate_interval_s). Cohort heatmaps are on the metrics service's /report page.",
        [],
        [
            _row("Customers"),
            _panel(
                "Active customers",
                "Customers active in the current day, week and month.",
                [("max by (period) (tenure_metrics_active_customers)", "{{period}}")],
            ),
            _panel(
                "Churn rate",
                "Share of the previous complete period's active customers not active in the last complete one.",
                [("max by (period) (tenure_metrics_churn_rate)", "{{period}}")],
                unit="percentunit",
            ),
            _panel(
                "LTV to date",
                "Revenue to date over customers to date.",
                [("max(tenure_metrics_ltv_to_date)", "LTV")],
                unit="currencyEUR",
            ),
            _panel(
                "Repeat-purchase rate",
                "Buyers with two orders or more, over buyers.",
                [("max(tenure_metrics_repeat_purchase_rate)", "repeat")],
                unit="percentunit",
            ),
            _row("Inputs"),
            _panel(
                "Events ingested/s",
                "",
                [(f"sum(rate(tenure_ingest_events_received_total[{R}]))", "events")],
                unit="ops",
            ),
            _panel(
                "Segment changes/s",
                "Customers entering and leaving segments.",
                [
                    (
                        f"sum by (change) (rate(tenure_segmenter_membership_changes_total[{R}]))",
                        "{{change}}",
                    )
                ],
                unit="ops",
            ),
        ],
        time_from="now-7d",
    )


def experiments() -> dict[str, Any]:
    return _dashboard(
        "tenure-experiments",
        "Tenure experiments",
        "Conversion per variant of each split and holdout, the sequential test's always-valid "
        "p-value (running minimum) and the decisions sent to the journey service.",
        [JOURNEY],
        [
            _row("Experiments"),
            _panel(
                "Conversion rate by variant",
                "At the last evaluation.",
                [
                    (
                        'max by (journey, step, variant) (tenure_metrics_experiment_conversion_rate{journey=~"$journey"})',
                        "{{journey}} {{step}} {{variant}}",
                    )
                ],
                unit="percentunit",
            ),
            _panel(
                "Sequential p-value",
                "Always valid however often it is looked at; a winner needs it below alpha (0.05 by default).",
                [
                    (
                        'min by (journey, step) (tenure_metrics_experiment_sequential_p_value{journey=~"$journey"})',
                        "{{journey}} {{step}}",
                    )
                ],
            ),
            _panel(
                "Run conversions/s by arm",
                "",
                [
                    (
                        f'sum by (journey, step, variant) (rate(tenure_metrics_run_conversions_total{{journey=~"$journey"}}[{R}]))',
                        "{{journey}} {{step}} {{variant}}",
                    )
                ],
                unit="ops",
            ),
            _panel(
                "Decisions sent",
                "experiment.decisions published, by verdict.",
                [("sum by (verdict) (tenure_metrics_experiment_decisions_total)", "{{verdict}}")],
                kind="stat",
            ),
        ],
        time_from="now-7d",
    )


DASHBOARDS = {
    "tenure-pipeline.json": pipeline,
    "tenure-funnel.json": funnel,
    "tenure-retention.json": retention,
    "tenure-experiments.json": experiments,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2) + "\n"


if __name__ == "__main__":
    for name in DASHBOARDS:
        (HERE / name).write_text(render(name))
        print(f"wrote {HERE / name}")
