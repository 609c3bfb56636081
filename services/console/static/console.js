// Tenure console: small progressive enhancements. Every page works without this file.
// Served from the console itself (CSP: script-src 'self'); no inline script anywhere.
"use strict";

(function () {
  // A form with data-confirm asks before it submits (archive a journey…).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // The segment editor: the match count and a sample, live, as the rule is edited.
  document.querySelectorAll("form.segment-editor").forEach(function (form) {
    var url = form.getAttribute("data-preview-url");
    var csrf = form.querySelector("input[name=csrf]").value;
    var rule = form.querySelector("textarea[name=rule]");
    var count = form.querySelector("[data-preview-count]");
    var sample = form.querySelector("[data-preview-sample]");
    var errorsBox = form.querySelector(".rule-errors");
    var timer = null;
    var sent = 0;

    function showErrors(messages) {
      errorsBox.textContent = "";
      messages.forEach(function (message) {
        var p = document.createElement("p");
        p.className = "field-error";
        p.textContent = message;
        errorsBox.appendChild(p);
      });
      rule.setAttribute("aria-invalid", messages.length ? "true" : "false");
    }

    function showSample(ids) {
      sample.textContent = ids.length ? "e.g. " : "nobody";
      ids.forEach(function (id, i) {
        var a = document.createElement("a");
        a.href = "/customers/" + encodeURIComponent(id);
        a.textContent = id;
        sample.appendChild(a);
        if (i < ids.length - 1) sample.appendChild(document.createTextNode(", "));
      });
    }

    function preview() {
      var parsed;
      try {
        parsed = JSON.parse(rule.value);
      } catch (e) {
        showErrors(["not JSON: " + e.message]);
        return;
      }
      var mine = ++sent;
      count.textContent = "Counting…";
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ rule: parsed }),
      })
        .then(function (answer) {
          return answer.json().then(function (body) { return { ok: answer.ok, body: body }; });
        })
        .then(function (result) {
          if (mine !== sent) return; // a newer edit is on its way
          if (!result.ok) {
            var messages = [];
            Object.keys(result.body.errors || {}).forEach(function (k) {
              messages = messages.concat(result.body.errors[k]);
            });
            showErrors(messages.length ? messages : ["the rule was refused"]);
            count.textContent = "No count: fix the rule";
            sample.textContent = "";
            return;
          }
          showErrors([]);
          count.textContent = result.body.count.toLocaleString() + " customers match now";
          showSample(result.body.sample);
        })
        .catch(function () {
          if (mine === sent) count.textContent = "The preview failed; use the Preview button";
        });
    }

    rule.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(preview, 400);
    });

    // "Use this rule": the structured leaf becomes the JSON rule, then a live preview.
    var leafButton = form.querySelector("button[value=leaf]");
    leafButton.addEventListener("click", function (event) {
      var count_ = form.querySelector("[name=leaf_count]").value.trim();
      var days = form.querySelector("[name=leaf_days]").value.trim();
      var event_ = form.querySelector("[name=leaf_event]").value.trim();
      if (!event_ || !/^\d+$/.test(count_) || (days && !/^\d+$/.test(days))) return; // the server says why
      event.preventDefault();
      var leaf = {
        kind: "event_count",
        event: event_,
        op: form.querySelector("[name=leaf_op]").value,
        count: parseInt(count_, 10),
      };
      if (days) leaf.within_days = parseInt(days, 10);
      rule.value = JSON.stringify(leaf, null, 2);
      preview();
    });
  });
})();

// A journey's counts per step, refreshed every 5 s while the page is open.
(function () {
  var table = document.querySelector("table[data-counts-url]");
  if (!table) return;
  var url = table.getAttribute("data-counts-url");
  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) {
        if (!body) return;
        table.querySelectorAll("tr[data-step]").forEach(function (row) {
          var counts = body.counts[row.getAttribute("data-step")] || {};
          row.querySelectorAll("[data-count]").forEach(function (cell) {
            var value = counts[cell.getAttribute("data-count")] || 0;
            cell.textContent = value.toLocaleString("en-US");
          });
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 5000);
})();
