// visionwatch dashboard: small enhancements over server-rendered pages. No framework.
"use strict";

const HIDDEN_FIELDS_KEY = "visionwatch.hiddenFields";

function ready(fn) {
  if (document.readyState !== "loading") fn();
  else document.addEventListener("DOMContentLoaded", fn);
}

// Tabs: the selected one is kept in the URL's hash, so a reload shows it again.
function setUpTabs() {
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  if (!tabs.length) return;
  function select(tab) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
  }
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      select(tab);
      history.replaceState(null, "", "#" + tab.id.replace(/^tab-/, ""));
    });
  }
  const wanted = document.getElementById("tab-" + location.hash.slice(1));
  select(tabs.includes(wanted) ? wanted : tabs[0]);
}

function setUpCharts() {
  const data = document.getElementById("series-data");
  if (!data || typeof uPlot === "undefined") return;
  const series = JSON.parse(data.textContent);
  // One chart: lines of [label, values, colour], sharing the chart's format.
  const draw = (id, lines, format) => {
    const target = document.getElementById(id);
    if (!target) return;
    const options = {
      width: target.clientWidth || 600,
      height: 220,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [{}, { values: (u, ticks) => ticks.map(format), size: 60 }],
      series: [{}, ...lines.map(([label, , stroke], index) => ({
        label, stroke, width: 2, fill: index === 0 ? stroke + "22" : undefined,
        // Precision is sparse (few intervals are judged): join its points.
        spanGaps: index > 0, points: { show: index > 0 },
        value: (u, v) => (v == null ? "–" : format(v)) }))],
    };
    const plot = new uPlot(options, [series.t, ...lines.map(([, values]) => values)], target);
    new ResizeObserver(() => plot.setSize({ width: target.clientWidth, height: 220 })).observe(target);
  };
  const percent = (v) => (v * 100).toFixed(1) + "%";
  draw("chart-requests", [["Requests", series.requests, "#3b5bdb"]],
       (v) => Math.round(v).toLocaleString());
  const believed = [["Avg confidence", series.confidence, "#2b8a3e"]];
  // What operators saw beside what the model believed (the model page sends it).
  if (series.precision) believed.push(["Realised precision", series.precision, "#c2255c"]);
  draw("chart-confidence", believed, percent);
}

function setUpAlertPreview() {
  const data = document.getElementById("alert-series");
  const target = document.getElementById("alert-preview");
  if (!data || !target || typeof uPlot === "undefined") return;
  const series = JSON.parse(data.textContent);
  const lines = [{}, { label: series.metric, stroke: "#3b5bdb", width: 2, spanGaps: false }];
  const columns = [series.t, series.value];
  if (series.threshold !== null) {
    lines.push({ label: "threshold", stroke: "#c92a2a", dash: [6, 4], width: 1 });
    columns.push(series.t.map(() => series.threshold));
  }
  const options = { width: target.clientWidth || 600, height: 220,
                    scales: { x: { time: true } }, series: lines };
  const plot = new uPlot(options, columns, target);
  new ResizeObserver(() => plot.setSize({ width: target.clientWidth, height: 220 })).observe(target);
}

// The cog menu hides detail fields; the choice is remembered in this browser.
function setUpFieldMenu() {
  const boxes = document.querySelectorAll("[data-toggle-field]");
  if (!boxes.length) return;
  let hidden;
  try { hidden = new Set(JSON.parse(localStorage.getItem(HIDDEN_FIELDS_KEY) || "[]")); }
  catch (e) { hidden = new Set(); }
  const apply = () => {
    for (const field of document.querySelectorAll(".field[data-field]")) {
      field.classList.toggle("hidden", hidden.has(field.dataset.field));
    }
    for (const box of boxes) box.checked = !hidden.has(box.dataset.toggleField);
  };
  for (const box of boxes) {
    box.addEventListener("change", () => {
      if (box.checked) hidden.delete(box.dataset.toggleField);
      else hidden.add(box.dataset.toggleField);
      localStorage.setItem(HIDDEN_FIELDS_KEY, JSON.stringify(Array.from(hidden)));
      apply();
    });
  }
  apply();
}

// Detections sort by class or confidence; a second click reverses.
function setUpSorting() {
  for (const button of document.querySelectorAll("button.sort")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      const body = button.closest("table").tBodies[0];
      const direction = button.dataset.direction === "asc" ? "desc" : "asc";
      for (const other of document.querySelectorAll("button.sort")) delete other.dataset.direction;
      button.dataset.direction = direction;
      const rows = Array.from(body.rows);
      const value = (row) => key === "confidence" ? Number(row.dataset.confidence) : row.dataset.class;
      rows.sort((a, b) => {
        const x = value(a), y = value(b);
        const order = key === "confidence" ? x - y : x.localeCompare(y);
        return direction === "asc" ? order : -order;
      });
      for (const row of rows) body.appendChild(row);
    });
  }
}

function setUpPredictionToggle() {
  const toggle = document.getElementById("toggle-predictions");
  const drawing = document.getElementById("drawing");
  if (!toggle || !drawing) return;
  toggle.addEventListener("change", () => drawing.classList.toggle("hide-predictions", !toggle.checked));
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

function setUpCopying() {
  const link = document.getElementById("copy-link");
  const status = document.getElementById("copy-status");
  if (link) {
    link.addEventListener("click", async () => {
      await copyText(location.href);
      if (status) status.textContent = "Link copied";
    });
  }
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      await copyText(document.getElementById(button.dataset.copy).textContent);
      button.textContent = "Copied";
    });
  }
}

ready(() => {
  setUpTabs();
  setUpCharts();
  setUpAlertPreview();
  setUpFieldMenu();
  setUpSorting();
  setUpPredictionToggle();
  setUpCopying();
});
