// actionwarden console: live overview numbers over Server-Sent Events, and bulk
// selection of dead letters. Every page works without this file.
"use strict";

(function () {
  const format = (n) => Number(n).toLocaleString("en-US");
  const fixed = (x) => Number(x).toFixed(1);

  // "2026-11-27T23:03:17.5Z" -> "2026-11-27 23:03:17 UTC"
  const utc = (rfc3339) => rfc3339.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");

  // A count cell: a link to the matching actions when there are any.
  function setCount(cell, n) {
    const href = cell.dataset.href;
    cell.replaceChildren();
    if (href && n > 0) {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = format(n);
      cell.append(link);
    } else {
      cell.textContent = format(n);
    }
  }

  function updateRow(row, line) {
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    for (const [word, n] of Object.entries(line.states)) {
      const cell = field("state-" + word);
      if (cell) setCount(cell, n);
    }
    for (const name of ["in_flight", "retries", "undelivered"]) {
      const cell = field(name);
      if (cell) setCount(cell, line[name]);
    }
    const rate = field("per_second");
    if (rate) rate.textContent = fixed(line.per_second);
    const percent = field("percent");
    if (percent) percent.textContent = fixed(line.percent) + "%";
    const bar = row.querySelector("progress");
    if (bar) {
      bar.max = Math.max(line.total, 1);
      bar.value = line.finished;
    }
  }

  function updateCards(totals) {
    const card = (name) => document.querySelector(`[data-total="${name}"] [data-field="${name}"]`);
    const set = (name, text) => {
      const value = card(name);
      if (value) value.textContent = text;
    };
    set("per_second", fixed(totals.per_second));
    set("in_flight", format(totals.in_flight));
    set("retries", format(totals.retries));
    set("undelivered", format(totals.undelivered));
    set("finished", format(totals.finished) + " of " + format(totals.total));
  }

  // The cluster's instances, rebuilt from each view (text only, never markup).
  function updateInstances(instances) {
    const body = document.querySelector("table[data-instances] tbody");
    if (!body) return;
    body.replaceChildren();
    for (const i of instances) {
      const row = document.createElement("tr");
      const state = i.live ? "live" : "dead (its actions are taken over after the lease)";
      const cells = [i.name, i.host, String(i.pid), utc(i.started), utc(i.last_heartbeat), state, format(i.owned_actions)];
      cells.forEach((text, n) => {
        const cell = document.createElement(n === 0 ? "th" : "td");
        if (n === 0) cell.scope = "row";
        if (n === 2 || n === 6) cell.className = "num";
        cell.textContent = text;
        row.append(cell);
      });
      body.append(row);
    }
  }

  function liveOverview() {
    const marker = document.querySelector("[data-live]");
    if (!marker || !window.EventSource) return;
    const state = marker.querySelector("[data-live-state]");
    const updated = marker.querySelector("[data-updated]");
    const source = new EventSource("/ui/events");
    source.addEventListener("error", () => {
      state.textContent = "reconnecting…";
    });
    source.addEventListener("overview", (event) => {
      const view = JSON.parse(event.data);
      state.textContent = "live";
      updated.textContent = utc(view.at);
      updated.dataset.read = view.read;
      for (const line of view.batches) {
        const row = document.querySelector(`tbody tr[data-batch="${CSS.escape(line.batch)}"]`);
        if (row) updateRow(row, line);
      }
      const totals = document.querySelector("tfoot tr[data-batch]");
      if (totals) updateRow(totals, view.totals);
      updateCards(view.totals);
      updateInstances(view.instances || []);
    });
  }

  function bulkSelection() {
    const form = document.getElementById("letters");
    if (!form) return;
    const boxes = () => Array.from(form.querySelectorAll('input[name="error_id"]'));
    const all = form.querySelector("[data-select-all]");
    const counter = form.querySelector("[data-selected-count]");
    const buttons = form.querySelectorAll("[data-needs-selection]");
    const refresh = () => {
      const n = boxes().filter((box) => box.checked).length;
      if (counter) counter.textContent = format(n);
      for (const button of buttons) {
        button.disabled = n === 0;
        const verb = button.value === "discard" ? "Discard" : "Replay";
        button.textContent = `${verb} ${format(n)} selected` + (button.value === "discard" ? "…" : "");
      }
      if (all) {
        all.checked = n > 0 && n === boxes().length;
        all.indeterminate = n > 0 && n < boxes().length;
      }
    };
    if (all) {
      all.addEventListener("change", () => {
        for (const box of boxes()) box.checked = all.checked;
        refresh();
      });
    }
    form.addEventListener("change", (event) => {
      if (event.target.name === "error_id") refresh();
    });
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    liveOverview();
    bulkSelection();
  });
})();
