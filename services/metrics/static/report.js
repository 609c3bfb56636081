// The retention report: reads /v1/report with the admin token and draws it.
//
// The token comes from the page's #token=… fragment (never sent to the server as part
// of a URL) or the form, and is kept in sessionStorage (this tab only, gone when it
// closes) — never localStorage. Every value from the API is inserted as text
// (textContent, DOM nodes): no innerHTML anywhere, so a name such as
// `<img src=x onerror=…>` is shown as those characters. The page's
// Content-Security-Policy (report.html) allows scripts from this origin only.
(function () {
  "use strict";
  const KEY = "tenure-metrics-token";
  const $ = (id) => document.getElementById(id);
  const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + " %");
  const num = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en", { maximumFractionDigits: digits }));
  const PALETTE = ["#2f6fed", "#12b76a", "#f79009", "#7a5af8", "#f04438", "#06aed4"];
  const charts = {};
  let data = null;

  // --- DOM helpers: text only ----------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "style") Object.assign(node.style, value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function replace(id, ...children) {
    $(id).replaceChildren(...children);
  }

  // An empty state that says why, in place of a chart (the canvas is hidden).
  function empty(canvasId, why) {
    if (charts[canvasId]) {
      charts[canvasId].destroy();
      delete charts[canvasId];
    }
    const canvas = $(canvasId);
    canvas.style.display = "none";
    const note = $(canvasId + "-empty");
    note.textContent = why;
    note.style.display = "block";
  }

  function chart(canvasId, config) {
    const canvas = $(canvasId);
    canvas.style.display = "block";
    $(canvasId + "-empty").style.display = "none";
    if (charts[canvasId]) charts[canvasId].destroy();
    charts[canvasId] = new Chart(canvas, config);
  }

  // Count axes: whole numbers only.
  const COUNT = { min: 0, ticks: { precision: 0 } };
  // Percentage axes: values are 0–100, labelled with a % sign.
  const PERCENT = { min: 0, max: 100, ticks: { callback: (v) => v + " %" } };

  // --- token ---------------------------------------------------------------------------

  function token() {
    const match = location.hash.match(/token=([^&]+)/);
    if (match) {
      sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    try {
      localStorage.removeItem(KEY); // where older versions of this page kept it
    } catch (e) {
      /* storage disabled */
    }
    return sessionStorage.getItem(KEY);
  }

  // --- filters -------------------------------------------------------------------------

  function query() {
    const params = new URLSearchParams(location.search);
    const out = new URLSearchParams();
    for (const name of ["from", "to"]) if (params.get(name)) out.set(name, params.get(name));
    return out;
  }

  function selectedJourney() {
    return new URLSearchParams(location.search).get("journey") || "";
  }

  function setupFilters() {
    const params = new URLSearchParams(location.search);
    $("filter-from").value = params.get("from") || "";
    $("filter-to").value = params.get("to") || "";
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      if ($("filter-from").value) next.set("from", $("filter-from").value);
      if ($("filter-to").value) next.set("to", $("filter-to").value);
      if ($("filter-journey").value) next.set("journey", $("filter-journey").value);
      history.replaceState(null, "", location.pathname + (next.toString() ? "?" + next : ""));
      load().catch(fail);
    });
    // the journey filter is applied in the page: no new request
    $("filter-journey").addEventListener("change", () => {
      const next = new URLSearchParams(location.search);
      if ($("filter-journey").value) next.set("journey", $("filter-journey").value);
      else next.delete("journey");
      history.replaceState(null, "", location.pathname + (next.toString() ? "?" + next : ""));
      if (data) draw(data);
    });
  }

  function journeyOptions(d) {
    const ids = new Set();
    for (const r of d.funnel) if (r.journey_id) ids.add(r.journey_id);
    for (const e of d.experiments) ids.add(e.journey_id);
    const chosen = selectedJourney();
    if (chosen) ids.add(chosen);
    const select = $("filter-journey");
    select.replaceChildren(
      el("option", { value: "" }, "every journey"),
      ...[...ids].sort().map((id) => el("option", { value: id }, id)),
    );
    select.value = chosen;
  }

  // --- load and draw -------------------------------------------------------------------

  async function load() {
    const t = token();
    if (!t) {
      $("login").style.display = "block";
      return;
    }
    const q = query().toString();
    const answer = await fetch("/v1/report" + (q ? "?" + q : ""), { headers: { Authorization: "Bearer " + t } });
    if (answer.status === 401) {
      sessionStorage.removeItem(KEY);
      $("login").style.display = "block";
      return;
    }
    if (!answer.ok) throw new Error("the metrics API answered " + answer.status + ": " + (await answer.text()));
    $("error").style.display = "none";
    data = await answer.json();
    draw(data);
    document.body.dataset.rendered = "true";
  }

  function draw(d) {
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false;
    journeyOptions(d);
    const journey = selectedJourney();
    $("range").textContent = d.from + " → " + d.to + (journey ? " · journey " + journey : "");
    const funnelEnd = new Date(d.to + "T00:00:00Z");
    const funnelStart = new Date(funnelEnd.getTime() - 30 * 86400000).toISOString().slice(0, 10);
    $("funnel-range").textContent = funnelStart + " → " + d.to;
    tiles(d);
    funnel(journey ? d.funnel.filter((r) => r.journey_id === journey) : d.funnel, journey);
    churn(d.activity, d.revenue);
    cohorts(d.cohorts);
    activity(d.activity, d.revenue);
    experiments(journey ? d.experiments.filter((e) => e.journey_id === journey) : d.experiments, journey);
    objectives(d.objectives);
  }

  function last(rows, pick) {
    for (let i = rows.length - 1; i >= 0; i--) if (pick(rows[i]) !== null && pick(rows[i]) !== undefined) return pick(rows[i]);
    return null;
  }

  function tiles(d) {
    const items = [
      ["Active this month", num(last(d.activity, (r) => r.active))],
      ["Monthly churn (last full month)", pct(last(d.activity.slice(0, -1), (r) => r.churn_rate))],
      ["LTV to date", num(last(d.revenue, (r) => r.ltv_to_date), 2)],
      ["Repeat-purchase rate", pct(d.customers.repeat_purchase_rate)],
      ["NPS (90 days)", d.satisfaction.nps === null ? "–" : num(d.satisfaction.nps, 0)],
    ];
    replace("tiles", ...items.map(([label, value]) => el("div", { class: "tile" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value))));
  }

  // requested → deferred (quiet hours, send time) / suppressed (consent, caps) →
  // accepted (the provider took it: SMTP 250) → delivered (provider feedback) → …
  const FUNNEL_STEPS = [
    ["requested", "requested"],
    ["deferred", "deferred (quiet hours, caps, send time)"],
    ["suppressed", "suppressed (consent, caps)"],
    ["failed", "failed"],
    ["sent", "accepted by the provider"],
    ["delivered", "delivered (provider feedback)"],
    ["opened", "opened"],
    ["clicked", "clicked"],
    ["converted", "converted"],
  ];

  function funnel(rows, journey) {
    const totals = FUNNEL_STEPS.map(([key]) => rows.reduce((sum, r) => sum + (r[key] || 0), 0));
    const notes = [];
    if (!totals.some((v) => v > 0)) {
      empty("funnel", journey ? `Journey ${journey} requested no message in these 30 days.` : "No message was requested in these 30 days: publish a journey (or widen the dates) and its sends appear here.");
      replace("funnel-notes");
      return;
    }
    const sent = totals[4];
    const delivered = totals[5];
    if (sent > 0 && delivered === 0)
      notes.push("“Delivered” needs feedback from the provider (a delivery webhook); SMTP only says it accepted the message, so email counts as accepted, not delivered.");
    if (totals[1] > 0) {
      const why = {};
      for (const r of rows) for (const [reason, n] of Object.entries(r.deferred_by_reason || {})) why[reason] = (why[reason] || 0) + n;
      const reasons = Object.entries(why).map(([reason, n]) => `${num(n)} ${reason.replace(/_/g, " ")}`).join(", ");
      notes.push(`${num(totals[1])} deferred (${reasons || "no reason given"}): held, and sent when the quiet hours end or the cap frees up.`);
    }
    replace("funnel-notes", ...notes.map((n) => el("p", { class: "note" }, n)));
    chart("funnel", {
      type: "bar",
      data: { labels: FUNNEL_STEPS.map(([, label]) => label), datasets: [{ label: "messages", data: totals, backgroundColor: PALETTE[0] }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: COUNT } },
    });
  }

  function churn(activityRows, revenueRows) {
    if (!activityRows.some((r) => r.active > 0)) {
      empty("churn", "No active customers in this range: churn and LTV need events (a purchase, any activity) in at least two months.");
      return;
    }
    const labels = activityRows.map((r) => r.period.slice(0, 7));
    const ltv = Object.fromEntries(revenueRows.map((r) => [r.period.slice(0, 7), r.ltv_to_date]));
    chart("churn", {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "churn rate", data: activityRows.map((r) => (r.churn_rate === null ? null : 100 * r.churn_rate)), borderColor: PALETTE[4], yAxisID: "y" },
          { label: "LTV to date", data: labels.map((l) => (ltv[l] === undefined ? null : ltv[l])), borderColor: PALETTE[1], yAxisID: "y1" },
        ],
      },
      options: {
        spanGaps: true,
        plugins: { tooltip: { callbacks: { label: (c) => (c.dataset.yAxisID === "y" ? `churn ${c.parsed.y.toFixed(1)} %` : `LTV ${num(c.parsed.y, 2)}`) } } },
        scales: {
          y: { position: "left", title: { display: true, text: "monthly churn" }, ...PERCENT },
          y1: { position: "right", title: { display: true, text: "LTV" }, grid: { drawOnChartArea: false }, min: 0 },
        },
      },
    });
  }

  function cohorts(rows) {
    if (!rows.length) {
      replace("cohorts", el("p", { class: "empty" }, "No cohorts in this range: a cohort is the customers first seen in a month; none were seen in these dates."));
      return;
    }
    const periods = rows[0].retention.length;
    const head = el("tr", {}, el("th", {}, "cohort"), el("th", {}, "customers"), Array.from({ length: periods }, (_, k) => el("th", {}, "+" + k)));
    const body = rows.map((row) =>
      el(
        "tr",
        {},
        el("td", {}, row.cohort.slice(0, 7)),
        el("td", {}, num(row.customers)),
        row.retention.map((v) =>
          v === null
            ? el("td", {})
            : el("td", { class: "heat", style: { background: `rgba(47, 111, 237, ${0.12 + 0.88 * v})`, color: v > 0.45 ? "#fff" : "#1d2433" } }, (100 * v).toFixed(0) + " %"),
        ),
      ),
    );
    replace("cohorts", el("table", {}, head, body));
  }

  function activity(activityRows, revenueRows) {
    if (!activityRows.some((r) => r.active > 0)) {
      empty("activity", "No customer was active in this range: events from ingest (identify, track) make customers active.");
      return;
    }
    const revenue = Object.fromEntries(revenueRows.map((r) => [r.period.slice(0, 7), r.revenue]));
    const labels = activityRows.map((r) => r.period.slice(0, 7));
    chart("activity", {
      data: {
        labels,
        datasets: [
          { type: "bar", label: "active customers", data: activityRows.map((r) => r.active), backgroundColor: PALETTE[0], yAxisID: "y" },
          { type: "line", label: "revenue", data: labels.map((l) => revenue[l] || 0), borderColor: PALETTE[2], yAxisID: "y1" },
        ],
      },
      options: { scales: { y: { ...COUNT, title: { display: true, text: "customers" } }, y1: { position: "right", min: 0, title: { display: true, text: "revenue" }, grid: { drawOnChartArea: false } } } },
    });
  }

  function experiments(rows, journey) {
    const measured = rows.filter((e) => e.result && e.result.arms && e.result.arms.length > 1);
    if (!rows.length) {
      empty("experiments", journey ? `Journey ${journey} has no A/B split or holdout.` : "No experiments: a journey with a split step or a holdout makes one.");
      replace("experiment-table");
      return;
    }
    if (!measured.length) {
      empty("experiments", "Experiments exist, but no variant has been entered yet: conversion per variant appears once customers go through the split.");
    } else {
      const labels = [];
      const intervals = [];
      const rates = [];
      for (const e of measured) {
        for (const arm of e.result.arms) {
          labels.push(`${e.journey_id} · ${e.step_id} · ${arm.variant}`);
          intervals.push([100 * arm.ci_low, 100 * arm.ci_high]);
          rates.push(100 * arm.rate);
        }
      }
      const top = Math.min(100, Math.max(5, Math.ceil(Math.max(...intervals.map((i) => i[1])) / 5) * 5));
      chart("experiments", {
        data: {
          labels,
          datasets: [
            { type: "bar", label: "95 % interval", data: intervals, backgroundColor: "rgba(47,111,237,0.25)", borderColor: PALETTE[0], borderWidth: 1 },
            { type: "line", label: "conversion rate", data: rates, showLine: false, pointRadius: 5, pointBackgroundColor: PALETTE[0] },
          ],
        },
        options: {
          indexAxis: "y",
          plugins: { tooltip: { callbacks: { label: (c) => (Array.isArray(c.raw) ? `${c.raw[0].toFixed(1)} – ${c.raw[1].toFixed(1)} %` : `${c.raw.toFixed(1)} %`) } } },
          scales: { x: { ...PERCENT, max: top, title: { display: true, text: "conversion" } } },
        },
      });
    }
    const body = rows.map((e) => {
      const p = e.p_value === null ? "–" : e.p_value < 0.001 ? "< 0.001" : e.p_value.toFixed(3);
      const verdict = el("td", { class: "verdict" }, (e.verdict || "not evaluated").replace(/_/g, " ") + (e.winner ? ": " + e.winner : ""));
      if (e.verdict) verdict.classList.add(String(e.verdict));
      return el("tr", {}, el("td", {}, `${e.journey_id} · ${e.step_id}`), el("td", {}, e.kind || ""), verdict, el("td", {}, p), el("td", {}, e.decision_id ? "sent to journeys" : ""));
    });
    replace("experiment-table", el("table", {}, el("tr", {}, el("th", {}, "experiment"), el("th", {}, "kind"), el("th", {}, "verdict"), el("th", {}, "p (sequential)"), el("th", {})), body));
  }

  function objectives(rows) {
    if (!rows.length) {
      replace("objectives", el("p", { class: "empty" }, "No objectives yet: POST /v1/objectives sets one (a metric, a target, a deadline)."));
      return;
    }
    const body = rows.map((o) => {
      const share = o.progress === null ? 0 : Math.max(0, Math.min(1, o.progress));
      const track = o.on_track === null ? "" : o.on_track ? el("span", { class: "ontrack" }, "on track") : el("span", { class: "offtrack" }, "off track");
      return el(
        "tr",
        {},
        el("td", {}, o.name),
        el("td", {}, o.metric.replace(/_/g, " ")),
        el("td", {}, `${fmt(o.metric, o.baseline)} → ${fmt(o.metric, o.target)}`),
        el("td", {}, fmt(o.metric, o.current)),
        el("td", { style: { width: "22%" } }, el("div", { class: "bar" }, el("span", { style: { width: (100 * share).toFixed(0) + "%" } }))),
        el("td", {}, `${fmt(o.metric, o.projected_at_deadline)} by ${o.deadline}`),
        el("td", {}, track),
      );
    });
    const head = el("tr", {}, ["objective", "metric", "baseline → target", "now", "progress", "projected", ""].map((h) => el("th", {}, h)));
    replace("objectives", el("table", {}, head, body));
  }

  function fmt(metric, v) {
    if (v === null || v === undefined) return "–";
    return /rate$/.test(metric) ? pct(v) : num(v, 2);
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("login").style.display = "none";
    load().catch(fail);
  });

  function fail(error) {
    $("error").style.display = "block";
    $("error").textContent = String(error);
    document.body.dataset.rendered = "error";
  }

  setupFilters();
  load().catch(fail);
})();
