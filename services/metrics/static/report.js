// The retention report: reads /v1/report with the admin token and draws it.
// The token comes from the page's #token=… fragment (never sent to the server as
// part of a URL) or the form, and is kept in localStorage.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + " %");
  const num = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en", { maximumFractionDigits: digits }));
  const PALETTE = ["#2f6fed", "#12b76a", "#f79009", "#7a5af8", "#f04438", "#06aed4"];

  function token() {
    const match = location.hash.match(/token=([^&]+)/);
    if (match) {
      localStorage.setItem("tenure-metrics-token", decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return localStorage.getItem("tenure-metrics-token");
  }

  async function load() {
    const t = token();
    if (!t) {
      $("login").style.display = "block";
      return;
    }
    const answer = await fetch("/v1/report" + location.search, { headers: { Authorization: "Bearer " + t } });
    if (answer.status === 401) {
      localStorage.removeItem("tenure-metrics-token");
      $("login").style.display = "block";
      return;
    }
    if (!answer.ok) throw new Error("the metrics API answered " + answer.status + ": " + (await answer.text()));
    draw(await answer.json());
    document.body.dataset.rendered = "true";
  }

  function draw(data) {
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false;
    $("range").textContent = data.from + " → " + data.to;
    tiles(data);
    funnel(data.funnel);
    churn(data.activity, data.revenue);
    cohorts(data.cohorts);
    activity(data.activity, data.revenue);
    experiments(data.experiments);
    objectives(data.objectives);
  }

  function last(rows, pick) {
    for (let i = rows.length - 1; i >= 0; i--) if (pick(rows[i]) !== null && pick(rows[i]) !== undefined) return pick(rows[i]);
    return null;
  }

  function tiles(data) {
    const items = [
      ["Active this month", num(last(data.activity, (r) => r.active))],
      ["Monthly churn", pct(last(data.activity, (r) => r.churn_rate))],
      ["LTV to date", num(last(data.revenue, (r) => r.ltv_to_date), 2)],
      ["Repeat-purchase rate", pct(data.customers.repeat_purchase_rate)],
      ["NPS (90 days)", data.satisfaction.nps === null ? "–" : num(data.satisfaction.nps, 0)],
    ];
    $("tiles").innerHTML = items
      .map(([label, value]) => `<div class="tile"><div class="label">${label}</div><div class="value">${value}</div></div>`)
      .join("");
  }

  function funnel(rows) {
    const steps = ["requested", "sent", "delivered", "opened", "clicked", "converted"];
    const totals = steps.map((s) => rows.reduce((sum, r) => sum + (r[s] || 0), 0));
    new Chart($("funnel"), {
      type: "bar",
      data: { labels: steps, datasets: [{ label: "messages", data: totals, backgroundColor: PALETTE[0] }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } } },
    });
  }

  function churn(activityRows, revenueRows) {
    const labels = activityRows.map((r) => r.period.slice(0, 7));
    const ltv = Object.fromEntries(revenueRows.map((r) => [r.period.slice(0, 7), r.ltv_to_date]));
    new Chart($("churn"), {
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
        scales: {
          y: { position: "left", title: { display: true, text: "churn %" }, min: 0, max: 100 },
          y1: { position: "right", title: { display: true, text: "LTV" }, grid: { drawOnChartArea: false }, min: 0 },
        },
      },
    });
  }

  function cohorts(rows) {
    if (!rows.length) {
      $("cohorts").textContent = "No cohorts in this range yet.";
      return;
    }
    const periods = rows[0].retention.length;
    const head = "<tr><th>cohort</th><th>customers</th>" + Array.from({ length: periods }, (_, k) => `<th>+${k}</th>`).join("") + "</tr>";
    const body = rows
      .map((row) => {
        const cells = row.retention
          .map((v) => {
            if (v === null) return "<td></td>";
            const shade = `rgba(47, 111, 237, ${0.12 + 0.88 * v})`;
            return `<td class="heat" style="background:${shade};color:${v > 0.45 ? "#fff" : "#1d2433"}">${(100 * v).toFixed(0)}%</td>`;
          })
          .join("");
        return `<tr><td>${row.cohort.slice(0, 7)}</td><td>${num(row.customers)}</td>${cells}</tr>`;
      })
      .join("");
    $("cohorts").innerHTML = `<table>${head}${body}</table>`;
  }

  function activity(activityRows, revenueRows) {
    const revenue = Object.fromEntries(revenueRows.map((r) => [r.period.slice(0, 7), r.revenue]));
    const labels = activityRows.map((r) => r.period.slice(0, 7));
    new Chart($("activity"), {
      data: {
        labels,
        datasets: [
          { type: "bar", label: "active customers", data: activityRows.map((r) => r.active), backgroundColor: PALETTE[0], yAxisID: "y" },
          { type: "line", label: "revenue", data: labels.map((l) => revenue[l] || 0), borderColor: PALETTE[2], yAxisID: "y1" },
        ],
      },
      options: { scales: { y: { min: 0 }, y1: { position: "right", min: 0, grid: { drawOnChartArea: false } } } },
    });
  }

  function experiments(rows) {
    const splits = rows.filter((e) => e.result && e.result.arms && e.result.arms.length > 1);
    const labels = [];
    const intervals = [];
    const rates = [];
    for (const e of splits) {
      for (const arm of e.result.arms) {
        labels.push(`${e.journey_id} · ${e.step_id} · ${arm.variant}`);
        intervals.push([100 * arm.ci_low, 100 * arm.ci_high]);
        rates.push(100 * arm.rate);
      }
    }
    new Chart($("experiments"), {
      data: {
        labels,
        datasets: [
          { type: "bar", label: "95 % interval", data: intervals, backgroundColor: "rgba(47,111,237,0.25)", borderColor: PALETTE[0], borderWidth: 1 },
          { type: "line", label: "conversion rate", data: rates, showLine: false, pointRadius: 5, pointBackgroundColor: PALETTE[0] },
        ],
      },
      options: { indexAxis: "y", scales: { x: { min: 0, title: { display: true, text: "conversion %" } } } },
    });
    const body = splits
      .map((e) => {
        const p = e.p_value === null ? "–" : e.p_value < 0.001 ? "< 0.001" : e.p_value.toFixed(3);
        return `<tr><td>${e.journey_id} · ${e.step_id}</td><td class="verdict ${e.verdict}">${e.verdict.replace(/_/g, " ")}${e.winner ? ": " + e.winner : ""}</td><td>${p}</td><td>${e.decision_id ? "sent to journeys" : ""}</td></tr>`;
      })
      .join("");
    $("experiment-table").innerHTML = `<table><tr><th>experiment</th><th>verdict</th><th>p (sequential)</th><th></th></tr>${body}</table>`;
  }

  function objectives(rows) {
    if (!rows.length) {
      $("objectives").textContent = "No objectives yet: POST /v1/objectives.";
      return;
    }
    const body = rows
      .map((o) => {
        const share = o.progress === null ? 0 : Math.max(0, Math.min(1, o.progress));
        const track = o.on_track === null ? "" : o.on_track ? '<span class="ontrack">on track</span>' : '<span class="offtrack">off track</span>';
        return `<tr><td>${o.name}</td><td>${o.metric.replace(/_/g, " ")}</td><td>${fmt(o.metric, o.baseline)} → ${fmt(o.metric, o.target)}</td><td>${fmt(o.metric, o.current)}</td><td style="width:22%"><div class="bar"><span style="width:${(100 * share).toFixed(0)}%"></span></div></td><td>${fmt(o.metric, o.projected_at_deadline)} by ${o.deadline}</td><td>${track}</td></tr>`;
      })
      .join("");
    $("objectives").innerHTML = `<table><tr><th>objective</th><th>metric</th><th>baseline → target</th><th>now</th><th>progress</th><th>projected</th><th></th></tr>${body}</table>`;
  }

  function fmt(metric, v) {
    if (v === null || v === undefined) return "–";
    return /rate$/.test(metric) ? pct(v) : num(v, 2);
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem("tenure-metrics-token", $("token").value);
    $("login").style.display = "none";
    load().catch(fail);
  });

  function fail(error) {
    $("error").style.display = "block";
    $("error").textContent = String(error);
    document.body.dataset.rendered = "error";
  }

  load().catch(fail);
})();
