// visionwatch dashboard: small enhancements over server-rendered pages. No framework.
"use strict";

const HIDDEN_FIELDS_KEY = "visionwatch.hiddenFields";
const TIME_ZONE_KEY = "visionwatch.timeZone";
const REFRESH_MS = 30000;

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

// Drawn charts by the id of their element, for the page's own scripts and its tests.
const charts = {};

// Alert spans and deploys over a chart: elements in uPlot's overlay, placed on each redraw
// (a resize or a zoom moves them). An alert span is a band that lets the cursor through
// (hovering still reads the values under it) with its top edge a link to its rule; a
// deploy is a line that links to its model.
function placeMarks(plot, marks) {
  let layer = plot.over.querySelector(".marks");
  if (!layer) {
    layer = document.createElement("div");
    layer.className = "marks";
    plot.over.appendChild(layer);
  }
  layer.replaceChildren();
  const { min, max } = plot.scales.x;
  if (min == null || max == null) return;
  const x = (t) => plot.valToPos(Math.min(Math.max(t, min), max), "x");
  for (const mark of marks) {
    const element = document.createElement(mark.kind === "alert" ? "div" : "a");
    if (mark.kind === "alert") {
      const end = mark.end == null ? max : mark.end;
      if (end < min || mark.start > max) continue;
      element.className = "mark mark-alert";
      element.dataset.start = mark.start;
      element.dataset.end = mark.end == null ? "" : mark.end;
      element.dataset.rule = mark.rule_id;
      element.style.left = x(mark.start) + "px";
      element.style.width = Math.max(2, x(end) - x(mark.start)) + "px";
      const edge = document.createElement("a");
      edge.className = "mark-edge";
      edge.href = mark.url;
      edge.title = mark.name + ": firing from " + formatTime(mark.start) +
        (mark.end == null ? ", still firing" : " to " + formatTime(mark.end));
      element.appendChild(edge);
    } else {
      if (mark.at < min || mark.at > max) continue;
      element.className = "mark mark-deploy";
      element.href = mark.url;
      element.dataset.at = mark.at;
      element.dataset.model = mark.model;
      element.title = mark.model + " first seen " + formatTime(mark.at);
      element.style.left = x(mark.at) + "px";
    }
    layer.appendChild(element);
  }
  // The x scale in seconds and pixels, for whoever checks where a mark stands.
  plot.root.dataset.xMin = min;
  plot.root.dataset.xMax = max;
  plot.root.dataset.width = plot.over.clientWidth;
}

function formatTime(seconds) {
  return shownTime(new Date(seconds * 1000), "minute");
}

// Times: the server writes UTC; unless the viewer chose UTC (kept in this browser), each
// <time> is rewritten in their zone, its UTC text kept as its title.
function inUtc() {
  return localStorage.getItem(TIME_ZONE_KEY) === "utc";
}

function shownTime(moment, style) {
  const two = (n) => String(n).padStart(2, "0");
  const utc = inUtc();
  const part = (local, universal) => (utc ? universal : local).call(moment);
  const year = part(moment.getFullYear, moment.getUTCFullYear);
  const month = part(moment.getMonth, moment.getUTCMonth);
  const day = two(part(moment.getDate, moment.getUTCDate));
  let clock = two(part(moment.getHours, moment.getUTCHours)) + ":" +
    two(part(moment.getMinutes, moment.getUTCMinutes));
  if (style === "exact") {
    clock += ":" + two(part(moment.getSeconds, moment.getUTCSeconds)) + "." +
      String(part(moment.getMilliseconds, moment.getUTCMilliseconds)).padStart(3, "0");
  }
  const zone = utc ? "UTC" : (new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
    .formatToParts(moment).find((p) => p.type === "timeZoneName") || { value: "" }).value;
  const date = style === "short"
    ? moment.toLocaleString("en", { month: "short", timeZone: utc ? "UTC" : undefined }) + " " + day
    : year + "-" + two(month + 1) + "-" + day;
  return date + " " + clock + " " + zone;
}

function setUpTimes(root) {
  const utc = inUtc();
  for (const element of root.querySelectorAll("time[datetime]")) {
    if (!element.dataset.utc) element.dataset.utc = element.textContent;
    if (utc) continue;  // as the server wrote it
    element.textContent = shownTime(new Date(element.getAttribute("datetime")), element.dataset.style);
    element.title = element.dataset.utc;
  }
}

function setUpTimeZoneChoice() {
  const choice = document.getElementById("time-zone");
  if (!choice) return;
  choice.value = inUtc() ? "utc" : "local";
  choice.addEventListener("change", () => {
    localStorage.setItem(TIME_ZONE_KEY, choice.value);
    location.reload();
  });
}

// A page whose period ends now (<main data-live>) fetches itself every REFRESH_MS and swaps
// its content in place: no reload, the open tab and the scroll kept. Paused while the tab
// is hidden (refreshed at once when it shows again, if due), and while the viewer is
// typing in one of its forms or has the custom range open.
function setUpLiveRefresh() {
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  const status = document.createElement("span");
  status.id = "live-status";
  status.className = "live";
  status.textContent = "Live";
  status.title = "This page refreshes itself every " + REFRESH_MS / 1000 + " s while shown";
  const heading = main.querySelector(".heading h1");
  if (heading) heading.after(status);
  let timer = null;
  let last = Date.now();
  const busy = () => main.querySelector("details.custom[open]") ||
    (document.activeElement && main.contains(document.activeElement) &&
     document.activeElement.matches("input, select, textarea"));
  async function refresh() {
    last = Date.now();
    if (busy()) return;
    let response;
    try {
      response = await fetch(location.href, { headers: { Accept: "text/html" } });
    } catch (error) {
      status.textContent = "Live (offline: retrying)";
      return;
    }
    if (!response.ok) {
      status.textContent = "Live (refresh failed: " + response.status + ")";
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const content = fresh.querySelector("main");
    if (!content) return;
    for (const [id, plot] of Object.entries(charts)) {
      plot.resizing.disconnect();
      plot.destroy();
      delete charts[id];
    }
    main.replaceChildren(...content.childNodes);
    main.dataset.refreshes = String(Number(main.dataset.refreshes || 0) + 1);
    setUpPage(main);
    status.textContent = "Live \u00b7 updated " + shownTime(new Date(), "exact").slice(11, 19);
    const newHeading = main.querySelector(".heading h1");
    if (newHeading) newHeading.after(status);
  }
  function schedule() {
    clearTimeout(timer);
    if (document.visibilityState !== "visible") return;
    timer = setTimeout(async () => { await refresh(); schedule(); },
                       Math.max(0, last + REFRESH_MS - Date.now()));
  }
  document.addEventListener("visibilitychange", schedule);
  schedule();
}

function setUpCharts() {
  const data = document.getElementById("series-data");
  if (!data || typeof uPlot === "undefined") return;
  const series = JSON.parse(data.textContent);
  const marks = series.marks || [];
  // One chart: lines of [label, values, colour, options], sharing the chart's format.
  // Clicking a legend's label hides its line; hovering shows every line's value.
  const draw = (id, lines, format, y) => {
    const target = document.getElementById(id);
    if (!target) return;
    const options = {
      width: target.clientWidth || 600,
      height: 220,
      legend: { show: true, live: true },
      scales: { x: { time: true }, ...(y ? { y } : {}) },
      ...(inUtc() ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") } : {}),
      axes: [{}, { values: (u, ticks) => ticks.map(format), size: 70 }],
      hooks: { draw: [(u) => placeMarks(u, marks)] },
      series: [{}, ...lines.map(([label, , stroke, extra], index) => ({
        label, stroke, width: 2, fill: index === 0 ? stroke + "22" : undefined,
        value: (u, v) => (v == null ? "\u2013" : format(v)), ...(extra || {}) }))],
    };
    const plot = new uPlot(options, [series.t, ...lines.map(([, values]) => values)], target);
    plot.setScale("x", { min: series.start, max: series.end });
    charts[id] = plot;
    plot.resizing = new ResizeObserver(() => plot.setSize({ width: target.clientWidth, height: 220 }));
    plot.resizing.observe(target);
  };
  const percent = (v) => (v * 100).toFixed(1) + "%";
  const count = (v) => Math.round(v).toLocaleString();
  const ms = (v) => (v * 1000 >= 100 ? (v * 1000).toFixed(0) : (v * 1000).toPrecision(3)) + " ms";
  // Sparse lines (precision: few intervals are judged) join their points.
  const sparse = { spanGaps: true, points: { show: true } };
  draw("chart-requests", [["Requests", series.requests, "#3b5bdb"],
                          ["Errors", series.errors, "#c92a2a"]], count);
  const believed = [["Avg confidence", series.confidence, "#2b8a3e"]];
  // What operators saw beside what the model believed (the model page sends it).
  if (series.precision && series.precision.some((v) => v != null)) believed.push(["Realised precision", series.precision, "#c2255c", sparse]);
  draw("chart-confidence", believed, percent);
  draw("chart-latency", [["p50", series.p50, "#1971c2"], ["p95", series.p95, "#e8590c"],
                         ["p99", series.p99, "#862e9c"]], ms);
  // A rate starts at 0 and shows at least 1 %: with no errors at all, uPlot's own range
  // would spread a flat 0 over a meaningless scale.
  const rate = { range: (u, min, max) => [0, Math.max(max || 0, 0.01) * 1.1] };
  draw("chart-errors", [["Error rate", series.error_rate, "#c92a2a"]], percent, rate);
}
window.visionwatchCharts = charts;

// The inferences page's chart of exactly its filters, fetched once the table is shown.
async function setUpSelectionChart() {
  const figure = document.getElementById("selection");
  const target = document.getElementById("chart-selection");
  if (!figure || !target || typeof uPlot === "undefined") return;
  const response = await fetch(figure.dataset.seriesUrl, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    document.getElementById("selection-total").textContent = "?";
    return;
  }
  const series = await response.json();
  document.getElementById("selection-total").textContent = series.total.toLocaleString();
  document.getElementById("selection-source").textContent =
    series.source === "rollups" ? "(from the rollups)" : "(counted from the rows of the period)";
  figure.dataset.total = series.total;
  const percent = (v) => (v * 100).toFixed(1) + "%";
  const options = {
    width: target.clientWidth || 600,
    height: 180,
    legend: { show: true, live: true },
    ...(inUtc() ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") } : {}),
    scales: { x: { time: true }, n: {}, confidence: { range: [0, 1] } },
    axes: [{}, { scale: "n", values: (u, ticks) => ticks.map((v) => Math.round(v).toLocaleString()), size: 70 },
           { scale: "confidence", side: 1, values: (u, ticks) => ticks.map(percent), size: 60, grid: { show: false } }],
    series: [{},
      { label: "Inferences", scale: "n", stroke: "#3b5bdb", fill: "#3b5bdb22", width: 2,
        value: (u, v) => (v == null ? "\u2013" : Math.round(v).toLocaleString()) },
      { label: "Mean confidence", scale: "confidence", stroke: "#2b8a3e", width: 2,
        spanGaps: false, value: (u, v) => (v == null ? "\u2013" : percent(v)) }],
  };
  const plot = new uPlot(options, [series.t, series.inferences, series.confidence], target);
  plot.setScale("x", { min: series.start, max: series.end });
  charts["chart-selection"] = plot;
  plot.resizing = new ResizeObserver(() => plot.setSize({ width: target.clientWidth, height: 180 }));
  plot.resizing.observe(target);
}

// An alert metric's value in its unit (rendering.metric_unit names it), as the server writes
// it (rendering.measured): 85.0%, 320.0 ms,
// 12 min, 1,204, 0.214.
const UNIT_FORMATS = {
  percent: (v) => (v * 100).toFixed(1) + "%",
  seconds: (v) => (v >= 1 ? v.toFixed(2) + " s" : (v * 1000).toFixed(1) + " ms"),
  duration: (v) => (v < 60 ? v.toFixed(0) + " s" : v < 3600 ? (v / 60).toFixed(0) + " min"
    : v < 172800 ? (v / 3600).toFixed(1) + " h" : (v / 86400).toFixed(1) + " days"),
  count: (v) => Math.round(v).toLocaleString("en-US"),
  score: (v) => v.toFixed(3),
};

function setUpAlertPreview() {
  const data = document.getElementById("alert-series");
  const target = document.getElementById("alert-preview");
  if (!data || !target || typeof uPlot === "undefined") return;
  const series = JSON.parse(data.textContent);
  // The metric's own unit on the axis and in the legend, as the history table writes it.
  const format = UNIT_FORMATS[series.unit] || UNIT_FORMATS.score;
  const shown = (u, v) => (v == null ? "\u2013" : format(v));
  const lines = [{}, { label: series.label, stroke: "#3b5bdb", width: 2, spanGaps: false,
                       value: shown }];
  const columns = [series.t, series.value];
  if (series.threshold !== null) {
    lines.push({ label: "threshold", stroke: "#c92a2a", dash: [6, 4], width: 1, value: shown });
    columns.push(series.t.map(() => series.threshold));
  }
  const options = { width: target.clientWidth || 600, height: 220,
                    scales: { x: { time: true } }, series: lines,
                    axes: [{}, { values: (u, ticks) => ticks.map(format), size: 70 }] };
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

// What a page's content needs, again after a live refresh swaps it.
function setUpPage(root) {
  setUpTabs();
  setUpCharts();
  setUpSelectionChart();
  setUpTimes(root);
}

ready(() => {
  setUpTimeZoneChoice();
  setUpPage(document);
  setUpLiveRefresh();
  setUpAlertPreview();
  setUpFieldMenu();
  setUpSorting();
  setUpPredictionToggle();
  setUpCopying();
});
