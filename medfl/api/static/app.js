/* medfl's page: plain JavaScript over the API (/api/), no library, no network but
   this service. The token stays in this tab (sessionStorage). */
"use strict";

const $ = (selector) => document.querySelector(selector);
const HEADLINE = ["accuracy", "auc", "sensitivity", "specificity", "f1"];
const BASELINE_LABELS = { local: "local baseline", pooled: "pooled baseline", scratch: "from scratch", pretrained: "pretrained, untrained" };
const FINAL_STATES = ["succeeded", "failed", "cancelled", "interrupted"];
const FIELD_INPUTS = {
  name: "f-name", "training.rounds": "f-rounds", "training.localEpochs": "f-epochs",
  "training.batchSize": "f-batch", "training.learningRate": "f-lr", "training.seed": "f-seed",
};
const state = { token: null, run: null, rounds: [], totalRounds: 0, stream: null, schema: [] };

class Problem extends Error {
  constructor(body, status) {
    super(body.detail || `request failed (${status})`);
    this.body = body;
    this.status = status;
  }
}

function el(name, attributes = {}, ...children) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fmt(value, digits = 3) {
  return value === null || value === undefined || !Number.isFinite(value) ? "n/a" : value.toFixed(digits);
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    signOut("The token was refused; sign in again.");
    throw new Problem({ detail: "unauthorized" }, 401);
  }
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Problem(body, response.status);
  return body;
}

/* --- signing in ---------------------------------------------------------------- */

function signOut(message) {
  sessionStorage.removeItem("medfl-token");
  state.token = null;
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#token").focus();
}

async function signIn(token) {
  state.token = token;
  try {
    await api("/api/experiments");
  } catch (error) {
    return;
  }
  sessionStorage.setItem("medfl-token", token);
  $("#login").hidden = true;
  $("#app").hidden = false;
  await Promise.all([refreshExperiments(), refreshRuns(), loadSites(), loadBackends()]);
}

async function loadBackends() {
  const backends = await api("/api/backends");
  $("#backend").replaceChildren(...backends.map((b) => el("option", { value: b, text: b })));
}

/* --- lists --------------------------------------------------------------------- */

async function refreshExperiments() {
  const experiments = await api("/api/experiments");
  const body = $("#experiments tbody");
  body.replaceChildren(...experiments.map((e) => el("tr", { "data-experiment": e.id },
    el("td", { text: e.name }), el("td", { text: e.sites.join(", ") }), el("td", { text: String(e.rounds) }),
    el("td", { text: e.model }), el("td", { text: e.privacy }),
    el("td", {},
      el("button", { type: "button", class: "launch", "aria-label": `Run ${e.name}`, text: "Run", onclick: () => launch(e.id) }),
      " ",
      el("button", { type: "button", class: "secondary", "aria-label": `Delete ${e.name}`, text: "Delete", onclick: () => removeExperiment(e) })))));
  $("#no-experiments").hidden = experiments.length > 0;
}

async function refreshRuns() {
  const runs = await api("/api/runs");
  const body = $("#runs tbody");
  body.replaceChildren(...runs.map((r) => el("tr", { "data-run": r.id },
    el("td", { text: r.experimentName }), el("td", { class: `status ${r.status}`, text: r.phase ? `${r.status} (${r.phase})` : r.status }),
    el("td", { text: `${r.roundsDone} / ${r.totalRounds}` }),
    el("td", { text: r.startedAt ? new Date(r.startedAt).toLocaleString() : "–" }),
    el("td", {}, el("button", { type: "button", "aria-label": `View run of ${r.experimentName}`, text: "View", onclick: () => showRun(r.id) })))));
  $("#no-runs").hidden = runs.length > 0;
}

async function launch(experimentId) {
  try {
    const run = await api(`/api/experiments/${experimentId}/runs`, { method: "POST", json: { backend: $("#backend").value || "fast" } });
    await refreshRuns();
    await showRun(run.id);
  } catch (error) {
    $("#form-error").textContent = error.message;
  }
}

async function removeExperiment(experiment) {
  if (!window.confirm(`Delete ${experiment.name} and its runs?`)) return;
  try {
    await api(`/api/experiments/${experiment.id}`, { method: "DELETE" });
  } catch (error) {
    window.alert(error.message);
  }
  await Promise.all([refreshExperiments(), refreshRuns()]);
}

/* --- a run: live view, then the report ------------------------------------------- */

function seriesFor(metric) {
  const sites = [...new Set(state.rounds.flatMap((r) => Object.keys(r.sites)))].sort();
  const series = sites.map((site) => ({
    name: site,
    points: state.rounds.map((r) => [r.round, (r.sites[site] && r.sites[site].metrics || {})[metric]]),
  }));
  series.push({ name: "all sites", bold: true, points: state.rounds.map((r) => [r.round, r.metrics[metric]]) });
  return series;
}

function redraw() {
  const metric = $("#metric").value;
  window.drawChart($("#chart"), seriesFor(metric), { metric, totalRounds: state.totalRounds });
  const last = state.rounds[state.rounds.length - 1];
  const body = $("#latest tbody");
  if (!last) { body.replaceChildren(); return; }
  const rows = Object.entries(last.sites).sort().map(([site, s]) =>
    el("tr", {}, el("td", { text: site }), el("td", { text: s.status }), el("td", { text: fmt((s.metrics || {})[metric]) })));
  rows.push(el("tr", { class: "total" }, el("th", { scope: "row", text: "all sites" }), el("td", { text: "" }),
    el("td", { id: "latest-value", text: fmt(last.metrics[metric]) })));
  body.replaceChildren(...rows);
  $("#run-progress").textContent = `round ${last.round} of ${state.totalRounds}`;
}

function showStatus(run) {
  state.totalRounds = run.totalRounds;
  const status = $("#run-status");
  status.textContent = run.phase ? `${run.status} (cluster: ${run.phase})` : run.status;
  status.className = `status ${run.status}`;
  $("#run-error").textContent = run.error || "";
  $("#cancel-run").hidden = FINAL_STATES.includes(run.status);
  $("#resume-run").hidden = !["cancelled", "interrupted"].includes(run.status) || run.backend !== "fast";
}

async function showRun(runId) {
  if (state.stream) state.stream.abort();
  state.run = runId;
  state.rounds = [];
  $("#report").hidden = true;
  $("#run-view").hidden = false;
  const run = await api(`/api/runs/${runId}`);
  $("#run-title").textContent = `Run of ${run.experimentName}`;
  showStatus(run);
  $("#run-progress").textContent = `round 0 of ${run.totalRounds}`;
  redraw();
  $("#run-title").scrollIntoView({ block: "start" });
  follow(runId);
}

function parseEvent(block) {
  const event = { type: "message", data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event.type = line.slice(7);
    else if (line.startsWith("data: ")) event.data += line.slice(6);
  }
  return event;
}

/* Server-Sent Events through fetch: EventSource cannot send the Authorization header. */
async function follow(runId) {
  const controller = new AbortController();
  state.stream = controller;
  const response = await fetch(`/api/runs/${runId}/events`, {
    headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
    signal: controller.signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event.data) await onEvent(runId, event.type, JSON.parse(event.data));
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") throw error;
  }
}

async function onEvent(runId, type, data) {
  if (runId !== state.run) return;
  if (type === "round") {
    state.rounds.push(data);
    redraw();
  } else if (type === "status") {
    showStatus(data);
  } else if (type === "end") {
    showStatus(data);
    await refreshRuns();
    if (data.roundsDone > 0) await showReport(runId);
  }
}

function metricRow(label, evaluation, id) {
  const cells = HEADLINE.map((m) => {
    const value = evaluation.metrics[m];
    const attributes = { text: fmt(value), "data-value": value === null || value === undefined ? "" : String(value) };
    if (id && m === "accuracy") attributes.id = id;
    return el("td", attributes);
  });
  return el("tr", {}, el("th", { scope: "row", text: label }), ...cells);
}

async function showReport(runId) {
  const result = await api(`/api/runs/${runId}/result`);
  const rows = [];
  if (result.final) rows.push(metricRow("federated", result.final, "final-accuracy"));
  if (result.personalized) rows.push(metricRow("personalised", result.personalized));
  for (const [key, evaluation] of Object.entries(result.baselines || {})) {
    rows.push(metricRow(BASELINE_LABELS[key] || key, evaluation));
  }
  $("#metrics-table tbody").replaceChildren(...rows);
  const sites = result.final ? Object.entries(result.final.sites) : [];
  $("#site-table tbody").replaceChildren(...sites.map(([site, s]) => el("tr", {},
    el("th", { scope: "row", text: site }), el("td", { text: String(s.numExamples) }),
    el("td", { text: fmt(s.metrics.accuracy) }), el("td", { text: fmt(s.metrics.auc) }))));
  showPrivacy(result.privacy);
  $("#notes").replaceChildren(...(result.notes || []).map((n) => el("li", { text: n })));
  await showArtifacts(runId);
  $("#report").hidden = false;
}

function showPrivacy(privacy) {
  const box = $("#privacy");
  if (!privacy) {
    box.replaceChildren(el("p", { text: "No differential privacy in this run." }));
    return;
  }
  if (privacy.mode === "central") {
    const spent = privacy.central || {};
    box.replaceChildren(el("p", { text: `Central DP at the server: ε = ${fmt(spent.epsilon)}, δ = ${privacy.delta}.` }));
    return;
  }
  const table = el("table", {}, el("caption", { text: "ε spent at each site (DP-SGD)" }),
    el("thead", {}, el("tr", {}, ...["Site", "ε spent", "δ", "ε planned", "steps"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...Object.entries(privacy.sites).map(([site, s]) => el("tr", {},
      el("th", { scope: "row", text: site }), el("td", { text: fmt(s.epsilon) }), el("td", { text: String(s.delta) }),
      el("td", { text: fmt(s.plannedEpsilon) }), el("td", { text: String(s.steps) })))));
  box.replaceChildren(table);
}

async function download(runId, name) {
  const response = await fetch(`/api/runs/${runId}/artifacts/${encodeURIComponent(name)}`, {
    headers: { Authorization: `Bearer ${state.token}` },
  });
  return URL.createObjectURL(await response.blob());
}

async function showArtifacts(runId) {
  const artifacts = await api(`/api/runs/${runId}/artifacts`);
  const plots = [];
  for (const a of artifacts.filter((x) => x.mediaType === "image/png")) {
    plots.push(el("img", { src: await download(runId, a.name), alt: `Plot ${a.name}: metrics per round`, class: "plot" }));
  }
  $("#plots").replaceChildren(...plots);
  $("#downloads").replaceChildren(...artifacts.map((a) => el("li", {},
    el("button", { type: "button", class: "secondary", text: `Download ${a.name} (${(a.size / 1024).toFixed(1)} kB)`,
      onclick: async () => {
        const link = el("a", { href: await download(runId, a.name), download: a.name });
        document.body.append(link);
        link.click();
        link.remove();
      } }))));
}

/* --- the new-experiment form ----------------------------------------------------- */

async function loadSites() {
  const sites = await api("/api/sites");
  $("#site-choices").replaceChildren(...sites.map((s) => el("div", { class: "check" },
    el("input", { type: "checkbox", id: `site-${s.name}`, value: s.name, checked: "", onchange: loadSchema }),
    el("label", { for: `site-${s.name}`, text: `${s.name} (${s.source}, ${s.rows === null ? "few" : s.rows} patients)` }))));
  await loadSchema();
}

function chosenSites() {
  return [...document.querySelectorAll("#site-choices input:checked")].map((i) => i.value);
}

async function loadSchema() {
  const sites = chosenSites();
  if (!sites.length) { state.schema = []; fillColumns(); return; }
  const query = sites.map((s) => `site=${encodeURIComponent(s)}`).join("&");
  state.schema = (await api(`/api/schema?${query}`)).columns;
  fillColumns();
}

function fillColumns() {
  const outcome = $("#f-outcome");
  const before = outcome.value || "num";
  outcome.replaceChildren(...state.schema.map((c) => el("option", { value: c.name, text: c.name })));
  if (state.schema.some((c) => c.name === before)) outcome.value = before;
  showFeatures();
}

function showFeatures() {
  const outcome = $("#f-outcome").value;
  const column = state.schema.find((c) => c.name === outcome);
  $("#positive-above-field").hidden = !(column && column.numeric);
  $("#positive-levels-field").hidden = !column || column.numeric;
  const previous = Object.fromEntries([...document.querySelectorAll("#feature-choices select")].map((s) => [s.dataset.column, s.value]));
  $("#feature-choices tbody").replaceChildren(...state.schema.filter((c) => c.name !== outcome).map((c) => {
    const select = el("select", { id: `feature-${c.name}`, "data-column": c.name },
      el("option", { value: "", text: "not used" }),
      ...(c.numeric ? [el("option", { value: "numeric", text: "numeric" })] : []),
      ...(c.categorical ? [el("option", { value: "categorical", text: "categorical" })] : []));
    if (previous[c.name] && [...select.options].some((o) => o.value === previous[c.name])) select.value = previous[c.name];
    return el("tr", {}, el("th", { scope: "row" }, el("label", { for: `feature-${c.name}`, text: c.name })), el("td", {}, select));
  }));
}

function number(id) {
  const text = $(`#${id}`).value.trim();
  return text === "" ? null : Number(text);
}

function specFromForm() {
  const outcome = $("#f-outcome").value;
  const column = state.schema.find((c) => c.name === outcome);
  const target = { column: outcome };
  if (column && column.numeric) target.positiveAbove = number("f-positive-above");
  else target.positive = $("#f-positive-levels").value.split(",").map((s) => s.trim()).filter(Boolean);
  const features = [...document.querySelectorAll("#feature-choices select")].filter((s) => s.value);
  const drop = $("#f-missing").value === "drop";
  const spec = {
    name: $("#f-name").value.trim(),
    sites: chosenSites(),
    schema: {
      target,
      numeric: features.filter((s) => s.value === "numeric").map((s) => s.dataset.column),
      categorical: features.filter((s) => s.value === "categorical").map((s) => s.dataset.column),
      missing: drop ? { numeric: "drop", categorical: "drop" } : { numeric: "mean", categorical: "level" },
    },
    model: { type: $("#f-model").value },
    training: {
      rounds: number("f-rounds"), localEpochs: number("f-epochs"), batchSize: number("f-batch"),
      learningRate: number("f-lr"), seed: number("f-seed"),
    },
    strategy: { name: $("#f-strategy").value },
    evaluation: { split: { test: number("f-test") }, baselines: $("#f-baselines").checked ? ["local", "pooled"] : [] },
  };
  const privacy = $("#f-privacy").value;
  if (privacy !== "none") spec.privacy = { mode: "local", targetEpsilon: Number(privacy), delta: 1e-5 };
  return spec;
}

function inputFor(field) {
  const path = field.replace(/^spec\./, "");
  if (FIELD_INPUTS[path]) return FIELD_INPUTS[path];
  for (const [prefix, id] of [["sites", "f-sites"], ["schema.target", "f-outcome"], ["schema", "f-features"],
    ["model", "f-model"], ["strategy", "f-strategy"], ["privacy", "f-privacy"]]) {
    if (path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`)) return id;
  }
  return null;
}

function clearErrors() {
  for (const node of document.querySelectorAll("#new-experiment .error")) node.textContent = "";
  for (const node of document.querySelectorAll("#new-experiment [aria-invalid]")) node.removeAttribute("aria-invalid");
  $("#created").textContent = "";
}

function showErrors(problem) {
  const errors = problem.body.errors || [{ field: "", message: problem.message }];
  let first = null;
  for (const error of errors) {
    const id = inputFor(error.field || "");
    const box = id ? $(`#${id}-error`) : $("#form-error");
    const text = id ? error.message : `${error.field ? `${error.field}: ` : ""}${error.message}`;
    box.textContent = box.textContent ? `${box.textContent} ${text}` : text;
    if (id) {
      $(`#${id}`).setAttribute("aria-invalid", "true");
      first = first || $(`#${id}`);
    }
  }
  (first || $("#form-error")).focus();
}

async function submitExperiment(event) {
  event.preventDefault();
  clearErrors();
  const button = $("#create");
  button.disabled = true;
  button.textContent = "Checking the sites' data…";
  try {
    const spec = specFromForm();
    await api("/api/experiments/validate", { method: "POST", json: { spec } });
    const created = await api("/api/experiments", { method: "POST", json: { spec } });
    $("#created").textContent = `Created ${created.name}. Press Run in the list of experiments to start it.`;
    await refreshExperiments();
  } catch (error) {
    if (error instanceof Problem) showErrors(error);
    else $("#form-error").textContent = String(error);
  } finally {
    button.disabled = false;
    button.textContent = "Create experiment";
  }
}

/* --- start ------------------------------------------------------------------------ */

function start() {
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#new-experiment").addEventListener("submit", submitExperiment);
  $("#f-outcome").addEventListener("change", showFeatures);
  $("#metric").addEventListener("change", redraw);
  $("#cancel-run").addEventListener("click", async () => {
    try {
      await api(`/api/runs/${state.run}/cancel`, { method: "POST" });
    } catch (error) {
      $("#run-error").textContent = error.message;
    }
  });
  $("#resume-run").addEventListener("click", async () => {
    try {
      await api(`/api/runs/${state.run}/resume`, { method: "POST" });
      await showRun(state.run);
    } catch (error) {
      $("#run-error").textContent = error.message;
    }
  });
  const fromLink = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (fromLink) history.replaceState(null, "", window.location.pathname);
  const token = fromLink || sessionStorage.getItem("medfl-token");
  if (token) signIn(token);
  else signOut("");
  setInterval(() => { if (state.token) refreshRuns().catch(() => {}); }, 5000);
}

document.addEventListener("DOMContentLoaded", start);
