// The roller console: the services, one service's rollout live, its configs and its events,
// and the commands a person may give, each previewed (a dry run on the server) before it is
// confirmed. Every figure comes from the roller's API; every rule (what a command does, who
// may give it, what needs attention) is the server's. Text from the server is only ever set
// with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "ionroller-token";
let current = null; // the service view's state: { name, status, permissions, events, ... }
let servicesTimer = null;

// ---- credentials --------------------------------------------------------------------------
// The token comes from the sign-in form or the URL's fragment (`#token=...`, which `ionroller
// up` prints and browsers never send to a server), and lives in this tab's sessionStorage: no
// other site can read it, it ends with the tab, and no cookie carries it by itself.
function takeTokenFromFragment() {
  const m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }
}
const token = () => sessionStorage.getItem(TOKEN_KEY);

class SignedOut extends Error {}

async function api(method, path, body) {
  const t = token();
  if (!t) throw new SignedOut();
  const init = { method, headers: { Authorization: "Bearer " + t } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new SignedOut();
  }
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { message: text }; }
  return { status: res.status, ok: res.ok, body: json };
}

async function get(path) {
  const r = await api("GET", path);
  if (!r.ok) throw new Error(refusal(r));
  return r.body;
}

/// The server's refusal as one message: its words, then each field it names that the words
/// do not already say.
function refusal(r) {
  const message = r.body.message || `refused (HTTP ${r.status})`;
  const problems = (r.body.problems || [])
    .map((p) => `${p.field}: ${p.problem}`)
    .filter((p) => !message.includes(p));
  return [message, ...problems].join("; ");
}

/// A failed fetch (the server is down or unreachable) in words.
function unreachable(e) {
  return e instanceof TypeError ? "Cannot reach the roller; retrying…" : e.message;
}

// ---- small helpers --------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function row(cells, attrs = {}) {
  return el("tr", attrs, ...cells.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", { text: c ?? "" }))));
}
/// A time as people read it, with its zone.
function when(iso) {
  if (!iso) return "";
  // The simulator's alarms that were never set carry the epoch.
  if (new Date(iso).getUTCFullYear() < 2000) return "never";
  return new Date(iso).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
}
function pct(share) { return Math.round(share * 100) + "%"; }
function notice(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "error" : "muted";
}
/// Shows the view `id`, or none (when what it would show could not be read).
function show(id) {
  for (const s of ["sign-in", "services-view", "service-view"]) $(s).hidden = s !== id;
}
function ready() { document.body.dataset.ready = "true"; }

// ---- routing --------------------------------------------------------------------------------
async function route() {
  clearInterval(servicesTimer);
  if (current?.abort) current.abort.abort();
  current = null;
  document.body.dataset.ready = "false";
  notice("");
  if (!token()) return signIn();
  try {
    const me = await get("/v1/whoami");
    $("who").textContent = "signed in as " + me.actor;
    $("sign-out").hidden = false;
    const m = location.hash.match(/^#\/services\/([a-z0-9-]+)(?:\/(config|events))?$/);
    if (m) await serviceView(m[1], m[2] || "rollout");
    else await servicesView();
  } catch (e) {
    if (e instanceof SignedOut) return signIn("That token was refused (revoked, expired or mistyped).");
    // Nothing of an earlier view stays on screen under a name it does not belong to.
    show(null);
    notice(unreachable(e), true);
    ready();
  }
}

function signIn(why) {
  show("sign-in");
  $("who").textContent = "";
  $("sign-out").hidden = true;
  $("sign-in-error").textContent = why || "";
  ready();
}

$("sign-in-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-input").value = "";
  route();
});
$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  route();
});

const STAGES = {
  launching: "launching",
  test_endpoint: "at its test endpoint",
  shifting: "moving traffic",
  step_done: "step reached",
  reverting: "rolling back",
};

// ---- the services --------------------------------------------------------------------------
async function servicesView() {
  show("services-view");
  await loadServices();
  ready();
  servicesTimer = setInterval(() => loadServices().catch(failed), 5000);
}

async function loadServices() {
  const { services } = await get("/v1/services");
  const statuses = await Promise.all(services.map((s) => get("/v1/services/" + s)));
  // Worst first (the server ranks what needs a person), then by name.
  statuses.sort((a, b) => (b.attention?.rank ?? 0) - (a.attention?.rank ?? 0) || a.service.localeCompare(b.service));
  const q = $("service-filter").value.trim().toLowerCase();
  const body = $("services").tBodies[0];
  body.replaceChildren();
  for (const s of statuses) {
    if (q && !s.service.includes(q)) continue;
    const link = el("a", { href: "#/services/" + s.service, text: s.service });
    const traffic = s.traffic.filter((t) => t.share > 0).map((t) => `${t.version ?? t.environment} ${pct(t.share)}`).join(", ") || "none";
    const r = s.rollout;
    const rollout = r ? `${r.kind} of ${r.version}: ${STAGES[r.stage] || r.stage}${r.step ? ` (step ${r.step} of ${r.step_count})` : ""}${r.paused ? ", paused" : ""}` : "none";
    const firing = s.alarms.filter((a) => a.state !== "OK").map((a) => `${a.name} ${a.state}`).join(", ");
    const alarms = firing || (s.alarms.length ? "all OK" : "none");
    body.append(row([link, s.stable_version ?? "none", traffic, rollout, alarms, s.attention?.reason || "nothing"],
      { class: "rank-" + (s.attention?.rank ?? 0), "data-service": s.service }));
  }
  $("no-services").hidden = services.length > 0;
}
$("service-filter").addEventListener("input", () => loadServices().catch(failed));

// ---- one service -----------------------------------------------------------------------------
async function serviceView(name, tab) {
  show("service-view");
  $("service-title").textContent = name;
  current = { name, events: [], abort: new AbortController(), refresh: null };
  const [status, me] = await Promise.all([
    get("/v1/services/" + name),
    get("/v1/whoami?service=" + name),
  ]);
  current.status = status;
  current.permissions = me.permissions || [];
  selectTab(tab);
  renderStatus();
  follow(current);
  if (tab === "config") await loadConfigs();
  ready();
}

function selectTab(tab) {
  for (const t of ["rollout", "config", "events"]) {
    $("tab-" + t).setAttribute("aria-selected", String(t === tab));
    $("tab-" + t).tabIndex = t === tab ? 0 : -1;
    $("panel-" + t).hidden = t !== tab;
  }
}
for (const t of ["rollout", "config", "events"]) {
  $("tab-" + t).addEventListener("click", () => {
    location.hash = `#/services/${current.name}${t === "rollout" ? "" : "/" + t}`;
  });
}
// Arrow keys move between tabs, as the ARIA tabs pattern has it.
document.querySelector(".tabs").addEventListener("keydown", (e) => {
  const tabs = ["rollout", "config", "events"];
  const i = tabs.findIndex((t) => $("tab-" + t).getAttribute("aria-selected") === "true");
  const next = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : null;
  if (next === null) return;
  const t = tabs[(next + tabs.length) % tabs.length];
  $("tab-" + t).focus();
  $("tab-" + t).click();
});

async function refreshStatus() {
  if (!current) return;
  const view = current;
  try {
    const status = await get("/v1/services/" + view.name);
    if (view !== current) return;
    view.status = status;
    renderStatus();
    // The server answers again: an earlier failure is no longer news.
    if ($("notice").className === "error") notice("");
  } catch (e) {
    failed(e);
  }
}

/// A background refresh failed: a refused token signs out, anything else is shown.
function failed(e) {
  if (e instanceof SignedOut) route();
  else notice(unreachable(e), true);
}

function renderStatus() {
  const s = current.status;
  const warnings = $("warnings");
  warnings.replaceChildren(...s.warnings.map((w) => el("li", { text: w })));
  const serving = s.stable_version ? `Stable version ${s.stable_version}` : "Nothing released yet";
  $("summary").textContent = `${serving}; ${s.in_service} instance(s) in service; config version ${s.config_version ?? "none"}.`;
  renderRollout(s);
  renderTraffic(s.traffic);
  const envs = $("environments").tBodies[0];
  envs.replaceChildren(...s.environments.filter((e) => !e.terminated).map((e) => row([
    e.name, e.version, String(e.config_version), e.status ?? "not seen yet", e.health ?? "",
    `${e.healthy_instances} healthy of ${e.instances}`,
    e.foreign ? "not created by ionroller (left alone)"
      : e.unused_since && served(s, e.version) ? `warm since ${when(e.unused_since)} (a rollback target)`
      : e.unused_since ? `kept for inspection since ${when(e.unused_since)} (never served: no rollback target)`
      : "",
  ])));
  if (!envs.rows.length) envs.append(row(["none yet", "", "", "", "", "", ""]));
  const alarms = $("alarms").tBodies[0];
  alarms.replaceChildren(...s.alarms.map((a) => {
    const r = row([a.name, a.state, a.reason, when(a.updated_at)]);
    r.children[1].className = "state-" + a.state;
    return r;
  }));
  if (!s.alarms.length) alarms.append(row(["none configured or seen", "", "", ""]));
  const history = $("history").tBodies[0];
  history.replaceChildren(...s.history.slice(0, 10).map((h) => {
    const r = row([h.version, h.from_version ?? "", h.outcome.replace("_", " ") + (h.detail ? ": " + h.detail : ""), h.requested_by, when(h.ended_at)]);
    r.children[2].className = "outcome-" + h.outcome;
    return r;
  }));
  if (!history.rows.length) history.append(row(["none yet", "", "", "", ""]));
  renderActions(s);
}

function renderRollout(s) {
  const box = $("rollout");
  const r = s.rollout;
  if (!r) {
    box.replaceChildren(el("p", { text: "No rollout in progress." }));
    return;
  }
  const from = r.from_version ? ` from ${r.from_version}` : "";
  const head = el("p", {}, el("b", { text: `${r.kind === "release" ? "Release" : "Rollback"} of ${r.version}${from}` }),
    ` requested by ${r.requested_by} at ${when(r.requested_at)}${r.paused ? " (paused)" : ""}`);
  const ladder = el("ol", { class: "ladder", "aria-label": "rollout steps" });
  const stage = r.stage;
  const plan = r.plan;
  const step = (text, state) => {
    const li = el("li", { text });
    if (state === "current") li.setAttribute("aria-current", "step");
    if (state === "done") { li.className = "done"; li.append(el("span", { class: "visually-hidden", text: " (done)" })); }
    ladder.append(li);
  };
  const launched = stage !== "launching";
  step(plan?.reuses_warm_environment ? "switch to the warm environment" : "launch", launched ? "done" : "current");
  if (plan?.test_endpoint) step("test endpoint", stage === "test_endpoint" ? "current" : stage === "launching" ? "" : "done");
  (plan?.steps || []).forEach((st, i) => {
    const n = i + 1;
    let state = "";
    if (r.step && (n < r.step || (n === r.step && stage === "step_done"))) state = "done";
    if (r.step === n && stage === "shifting") state = "current";
    if (r.step === n && stage === "step_done" && st.pause) state = "current";
    const pause = st.pause === "until_promoted" ? ", then waits for promote" : st.pause ? `, then ${st.pause}` : "";
    // The percent is the policy's; the instances are what it means at this size.
    const real = st.instances ? ` (${st.instances.new} new, ${st.instances.old} old)` : "";
    step(`${st.label} ${st.percent}%${real}${pause}`, state);
  });
  const waits = el("p", {}, el("b", { text: "Waiting for: " }), r.waiting_for);
  const deadline = el("p", { id: "deadline" });
  box.replaceChildren(head, ladder, waits, deadline);
  if (stage === "reverting") box.prepend(el("p", { class: "error", text: "Rolling back: traffic returns to the previous version." }));
  tickDeadline();
}

// The progress deadline counts down here, between the server's answers.
function tickDeadline() {
  const d = $("deadline");
  const at = current?.status?.rollout?.deadline_at;
  if (!d) return;
  if (!at) { d.textContent = ""; return; }
  const left = Math.max(0, Math.round((new Date(at) - Date.now()) / 1000));
  d.textContent = `Rolled back automatically if no progress within ${left}s (at ${when(at)}).`;
}
setInterval(tickDeadline, 1000);

function renderTraffic(traffic) {
  const bar = $("traffic");
  const versions = [...new Set(traffic.map((t) => t.version ?? t.environment))];
  const parts = traffic.filter((t) => t.share > 0);
  bar.replaceChildren(...parts.map((t) => {
    const part = el("div", {
      class: "share v" + (versions.indexOf(t.version ?? t.environment) % 4),
      text: `${t.version ?? t.environment} ${pct(t.share)}`,
    });
    // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    part.style.width = (t.share * 100).toFixed(1) + "%";
    return part;
  }));
  bar.setAttribute("aria-label", parts.length ? "traffic: " + parts.map((t) => `${t.version ?? t.environment} ${pct(t.share)}`).join(", ") : "no traffic");
}

// Buttons for what this identity may do (the server's answer to whoami?service=), enabled
// when the rollout's state allows it; the server checks both again.
function renderActions(s) {
  const mayDeploy = current.permissions.includes("deploy");
  const actions = $("actions");
  actions.hidden = !mayDeploy;
  if (!mayDeploy) return;
  const r = s.rollout;
  const reverting = r?.stage === "reverting";
  const enabled = {
    release: true,
    promote: !!r && !reverting && !r.paused,
    "promote-full": !!r && !reverting && !r.paused && !r.promoted_full,
    pause: !!r && !reverting && !r.paused,
    resume: !!r && r.paused,
    abort: !!r && !reverting,
    rollback: servedVersions(s).length > 0 || (!!r && !reverting),
  };
  const why = !r ? "no rollout in progress" : reverting ? "the rollout is rolling back" : r.paused ? "the rollout is paused: resume first" : "the rollout is not paused";
  for (const b of actions.querySelectorAll("button")) {
    b.disabled = !enabled[b.dataset.action];
    b.title = b.disabled ? `Not now: ${why}` : "";
  }
}

/// Whether `version` ever completed a rollout (served all traffic).
function served(s, version) {
  return version === s.stable_version || s.history.some((h) => h.outcome === "completed" && h.version === version);
}

/// Versions that completed a rollout before (so served), other than the stable one.
function servedVersions(s) {
  const seen = new Set();
  for (const h of s.history) if (h.outcome === "completed" && h.version !== s.stable_version) seen.add(h.version);
  return [...seen];
}

// ---- commands: preview (dry run), then confirm -------------------------------------------
const COMMANDS = {
  release: { title: "Release a version", path: "releases" },
  promote: { title: "Promote: end the current wait", path: "promote" },
  "promote-full": { title: "Promote to full: skip every step left", path: "promote" },
  pause: { title: "Pause the rollout", path: "pause" },
  resume: { title: "Resume the rollout", path: "resume" },
  abort: { title: "Abort: send traffic back to the previous version", path: "abort" },
  rollback: { title: "Roll back", path: "rollback" },
};
let pending = null;

$("actions").addEventListener("click", (e) => {
  const action = e.target.closest("button")?.dataset.action;
  if (action) openCommand(action);
});

function openCommand(action) {
  pending = { action };
  $("confirm-title").textContent = `${COMMANDS[action].title} (${current.name})`;
  $("confirm-what").textContent = explain(action, current.status);
  $("release-fields").hidden = action !== "release";
  $("rollback-fields").hidden = action !== "rollback";
  if (action === "rollback") {
    const select = $("rollback-version");
    const versions = servedVersions(current.status);
    select.replaceChildren(
      ...(current.status.rollout ? [el("option", { value: "", text: "the version before this rollout" })] : []),
      ...versions.map((v) => el("option", { value: v, text: v })));
  }
  $("reason").value = "";
  $("reason").required = false;
  $("override-alarms").checked = false;
  $("preview").replaceChildren();
  $("confirm-error").textContent = "";
  $("confirm-button").disabled = true;
  $("confirm").showModal();
}

/// What a command will do to this service now, in words (the preview then shows what it records).
function explain(action, s) {
  const r = s.rollout;
  const back = r?.from_version || s.stable_version || "the previous version";
  switch (action) {
    case "release": return `A new environment for the version, then traffic by the steps of config version ${s.config_version}; ${s.stable_version || "nothing"} keeps serving until then.`;
    case "promote": return r ? `Ends the current wait (${r.waiting_for}); the next step starts.` : "";
    case "promote-full": return r ? `Skips every step left: the next shift sends all traffic to ${r.version}. Alarms still roll it back.` : "";
    case "pause": return r ? `Holds ${r.version} where it is until someone resumes.` : "";
    case "resume": return r ? `Lets ${r.version} go on from where it was paused.` : "";
    case "abort": return r ? `Sends all traffic back to ${back}; ${r.version} is not a rollback target afterwards.` : "";
    case "rollback": return r ? `Mid-rollout: sends traffic back to ${back}, as an abort does; or pick a version that served.` : "Back to a version that served all traffic (warm: one switch, seconds).";
    default: return "";
  }
}

function commandBody() {
  const reason = $("reason").value.trim() || null;
  switch (pending.action) {
    case "release": return { version: $("release-version").value.trim(), reason, override_alarms: $("override-alarms").checked };
    case "rollback": return { to_version: $("rollback-version").value || null, reason };
    case "promote": return { full: false, reason };
    case "promote-full": return { full: true, reason };
    default: return { reason };
  }
}

async function sendCommand(dryRun) {
  const body = commandBody();
  if (pending.action === "release" && body.override_alarms && !body.reason) {
    throw new Error("Overriding a firing alarm needs a reason: say why it is safe.");
  }
  const path = `/v1/services/${current.name}/${COMMANDS[pending.action].path}${dryRun ? "?dry_run=true" : ""}`;
  const r = await api("POST", path, body);
  if (!r.ok) throw new Error(refusal(r));
  return r.body;
}

$("override-alarms").addEventListener("change", () => {
  $("reason").required = $("override-alarms").checked;
});
// Any change to the input makes the preview stale: preview again before confirming.
for (const id of ["release-version", "rollback-version", "reason", "override-alarms"]) {
  $(id).addEventListener("input", () => { $("confirm-button").disabled = true; });
}

$("preview-button").addEventListener("click", async () => {
  $("confirm-error").textContent = "";
  $("preview").replaceChildren();
  try {
    const answer = await sendCommand(true);
    const out = [el("p", { text: "This would record:" }), el("ul", {}, ...(answer.would_record || []).map((w) => el("li", { text: w })))];
    if (pending.action === "release") {
      const plan = await get(`/v1/services/${current.name}/plan?version=${encodeURIComponent(commandBody().version)}`);
      out.push(planTable(plan.plan));
    }
    $("preview").replaceChildren(...out);
    $("confirm-button").disabled = false;
    $("confirm-button").focus();
  } catch (e) {
    if (e instanceof SignedOut) { $("confirm").close(); return signIn("Your token was refused."); }
    $("confirm-error").textContent = e.message;
  }
});

$("confirm-button").addEventListener("click", async () => {
  $("confirm-button").disabled = true;
  try {
    const answer = await sendCommand(false);
    $("confirm").close();
    notice(`${answer.action} accepted${answer.rollout_id ? " (rollout " + answer.rollout_id.slice(0, 8) + ")" : ""}.`);
    await refreshStatus();
  } catch (e) {
    if (e instanceof SignedOut) { $("confirm").close(); return signIn("Your token was refused."); }
    $("confirm-error").textContent = e.message;
  }
});
$("cancel-button").addEventListener("click", () => $("confirm").close());

function planTable(plan) {
  const t = el("table", { class: "plan" },
    el("caption", { text: `Plan: environment ${plan.environment}${plan.reuses_warm_environment ? " (warm, reused: one switch)" : ""}${plan.test_endpoint ? ", test endpoint first" : ""}; progress deadline ${plan.progress_deadline}` }),
    el("thead", {}, row(["Step", "Traffic", "Instances new / old", "Then"].map((h) => el("span", { text: h })))));
  const body = el("tbody");
  for (const s of plan.steps) {
    body.append(row([s.label, s.percent + "%", s.instances ? `${s.instances.new} / ${s.instances.old}` : "", s.pause === "until_promoted" ? "waits for promote" : s.pause ? "pause " + s.pause : ""]));
  }
  t.append(body);
  return t;
}

// ---- live: the service's events over SSE (fetch, so the token goes in a header) ------------
async function follow(view) {
  let last = null;
  let caughtUp = false;
  while (view === current) {
    try {
      const headers = { Authorization: "Bearer " + token() };
      if (last) headers["Last-Event-ID"] = last;
      const res = await fetch(`/v1/services/${view.name}/events`, { headers, signal: view.abort.signal });
      if (res.status === 401) { sessionStorage.removeItem(TOKEN_KEY); return route(); }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let name = "message", data = [], id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (id) last = id;
          if (name === "caught-up") {
            caughtUp = true;
            renderEvents();
            if ($("notice").className === "error") { notice(""); refreshStatus(); }
            continue;
          }
          if (!data.length || name === "error") continue;
          view.events.push(JSON.parse(data.join("\n")));
          if (view.events.length > 2000) view.events.splice(0, view.events.length - 2000);
          if (caughtUp) {
            renderEvents();
            clearTimeout(view.refresh);
            view.refresh = setTimeout(refreshStatus, 200);
          }
        }
      }
    } catch (e) {
      if (view.abort.signal.aborted) return;
    }
    if (view === current) notice("Lost the live feed from the roller; reconnecting…", true);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/// The roller itself records observations and decisions; people give commands.
const isPerson = (actor) => !!actor && actor !== "roller";

function renderEvents() {
  if (!current) return;
  const q = $("event-filter").value.trim().toLowerCase();
  const peopleOnly = $("people-only").checked;
  const body = $("events").tBodies[0];
  const rows = [];
  for (let i = current.events.length - 1; i >= 0 && rows.length < 500; i--) {
    const e = current.events[i];
    const reason = e.data?.reason;
    const said = e.summary || e.type;
    const sentence = reason && !said.includes(reason) ? `${said}: ${reason}` : said;
    if (peopleOnly && !isPerson(e.actor)) continue;
    if (q && !`${e.actor} ${sentence} ${e.type}`.toLowerCase().includes(q)) continue;
    const raw = el("details", {}, el("summary", { text: sentence }), el("pre", { text: JSON.stringify(e, null, 2) }));
    rows.push(row([when(e.occurred_at), e.actor ?? "", raw], { "data-type": e.type }));
  }
  body.replaceChildren(...rows);
}
$("event-filter").addEventListener("input", renderEvents);
$("people-only").addEventListener("change", renderEvents);

// ---- configs: versions, a side-by-side diff, the plan of a release ---------------------------
async function loadConfigs() {
  const { configs: newestFirst } = await get(`/v1/services/${current.name}/configs`);
  const configs = newestFirst.slice().sort((a, b) => a.config_version - b.config_version);
  current.configs = configs;
  // The config the serving environment runs, beside the newest saved.
  const live = current.status.environments.find((e) => e.version === current.status.stable_version && !e.terminated)?.config_version;
  $("config-versions").tBodies[0].replaceChildren(...newestFirst.map((c) => row([
    String(c.config_version) + (c.config_version === live ? " (serving)" : c === newestFirst[0] ? " (newest: the next release uses it)" : ""),
    c.saved_by, when(c.saved_at)])));
  const options = () => configs.map((c) => el("option", { value: String(c.config_version), text: "version " + c.config_version }));
  $("diff-from").replaceChildren(...options());
  $("diff-to").replaceChildren(...options());
  if (configs.length) {
    $("diff-to").value = String(configs[configs.length - 1].config_version);
    $("diff-from").value = String(configs[Math.max(0, configs.length - 2)].config_version);
  }
  renderDiff();
}

/// A config as path → value (JSON text), e.g. `rollout.steps[1].percent` → `25`.
function flatten(value, path = "", out = new Map()) {
  if (value !== null && typeof value === "object" && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) {
      flatten(v, Array.isArray(value) ? `${path}[${k}]` : path ? `${path}.${k}` : k, out);
    }
  } else {
    out.set(path, JSON.stringify(value));
  }
  return out;
}

function renderDiff() {
  const configs = current?.configs || [];
  const pick = (id) => configs.find((c) => String(c.config_version) === $(id).value);
  const a = pick("diff-from"), b = pick("diff-to");
  const body = $("diff").tBodies[0];
  if (!a || !b) { body.replaceChildren(); return; }
  $("diff-from-head").textContent = "version " + a.config_version;
  $("diff-to-head").textContent = "version " + b.config_version;
  const fa = flatten(a.config), fb = flatten(b.config);
  const paths = [...new Set([...fa.keys(), ...fb.keys()])].sort();
  const all = $("diff-all").checked;
  const rows = [];
  for (const p of paths) {
    const va = fa.get(p), vb = fb.get(p);
    const changed = va !== vb;
    if (!changed && !all) continue;
    const r = row([el("code", { text: p }), el("code", { text: va ?? "(absent)" }), el("code", { text: vb ?? "(absent)" })], changed ? { class: "changed-row" } : {});
    if (changed) { r.children[1].className = "changed"; r.children[2].className = "changed"; }
    rows.push(r);
  }
  if (!rows.length) rows.push(row(["no differences", "", ""]));
  body.replaceChildren(...rows);
}
for (const id of ["diff-from", "diff-to", "diff-all"]) $(id).addEventListener("change", renderDiff);

$("plan-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!$("plan-version").value.trim()) {
    $("plan-out").replaceChildren(el("p", { class: "error", text: "Give the version a release would run, e.g. v2." }));
    return;
  }
  try {
    const plan = await get(`/v1/services/${current.name}/plan?version=${encodeURIComponent($("plan-version").value.trim())}`);
    $("plan-out").replaceChildren(planTable(plan.plan));
  } catch (err) {
    $("plan-out").replaceChildren(el("p", { class: "error", text: err.message }));
  }
});

// ---- start -------------------------------------------------------------------------------------
async function start() {
  takeTokenFromFragment();
  try {
    const links = await fetch("/console/links.json").then((r) => r.json());
    if (links.trail_url) {
      $("trail-link").href = links.trail_url + "/";
      $("trail-link").hidden = false;
    }
  } catch { /* no link to trail */ }
  window.addEventListener("hashchange", () => { takeTokenFromFragment(); route(); });
  await route();
}
start();
