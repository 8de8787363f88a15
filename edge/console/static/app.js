// The guard console's page: boots into the login (or first-run) screen, then the one-page console. Panels
// live in their own modules; this one holds the session, the top bar, the tabs and the refresh timers.
import { changeOwnPassword, renderAccounts, showAccounts } from "./accounts.js";
import { ApiError, get, optional, post, onUnauthorized, setCsrf } from "./api.js";
import { initAuth, showTab } from "./auth.js";
import { loadAlarms, renderAlarms } from "./alarms.js";
import { ask, toast } from "./dialog.js";
import { loadDoors, renderDoors } from "./doors.js";
import { $, clear, debounce, h, icon } from "./dom.js";
import { render as renderFeed, startFeed, stopFeed } from "./feed.js";
import { loadHealth, renderHealth } from "./health.js";
import { applyStatic, onLangChange, t, toggleLang } from "./i18n.js";
import { renderLookup } from "./lookup.js";
import { initPassCheck, loadCameras, refocus, rerender as renderPass } from "./passcheck.js";
import { emit, errorText, isAdmin, on, state } from "./state.js";
import { renderVisitorForm } from "./visitors.js";

const timers = [];
let currentTab = "visitor";

function showAuth(message = "") {
  stopFeed();
  for (const id of timers.splice(0)) clearInterval(id);
  state.session = null;
  setCsrf(null);
  $("#main").hidden = true;
  $("#auth").hidden = false;
  showTab("login", message);
}

async function showMain(session) {
  state.session = session;
  setCsrf(session.csrf_token);
  $("#auth").hidden = true;
  $("#main").hidden = false;
  document.body.dataset.role = session.role;
  renderUser();
  await Promise.all([loadSite(), loadDoors(), loadNames(), loadCameras()].map((p) => p.catch(report)));
  renderSite();
  renderTabs();
  await Promise.all([loadAlarms(), loadHealth()].map((p) => p.catch(report)));
  await startFeed().catch(report);
  timers.push(
    setInterval(() => loadDoors().then(renderSite).catch(() => {}), 10000),
    setInterval(() => loadHealth().catch(() => {}), 15000),
    setInterval(() => loadAlarms().catch(() => {}), 30000),
  );
  refocus();
}

function report(err) {
  if (err instanceof ApiError && err.status === 401) return;
  toast(errorText(err, t), "error");
}

async function loadSite() {
  state.site = await optional("/api/site");
}

// Names for the feed: people and passes by id (the event log keeps ids only).
async function loadNames() {
  const [people, passes] = await Promise.all([
    optional("/api/people?q=").catch(() => null),
    optional("/api/passes?q=").catch(() => null),
  ]);
  for (const p of people ?? []) state.names.set(p.id, p.name);
  for (const p of passes ?? []) state.names.set(p.id, p.visitor);
}

function inLockdown() {
  if (state.site && "lockdown" in state.site) return Boolean(state.site.lockdown);
  const doors = [...state.doors.values()];
  return doors.length > 0 && doors.every((d) => d.mode === "lockdown");
}

function renderSite() {
  const site = state.site;
  $("#site-name").textContent = site?.site_name ?? t("app.title");
  $("#gateway-id").textContent = site ? t("top.gateway", { id: site.gateway_id }) : "";
  const lockdown = inLockdown();
  document.body.classList.toggle("lockdown", lockdown);
  $("#lockdown-banner").hidden = !lockdown;
  const controls = $("#site-controls");
  if (!isAdmin()) {
    clear(controls);
    return;
  }
  clear(
    controls,
    lockdown
      ? h("button", { type: "button", class: "btn btn-go", id: "btn-normal", onclick: () => setMode("normal") }, icon("shield"), t("site.normal"))
      : h("button", { type: "button", class: "btn btn-danger", id: "btn-lockdown", onclick: () => setMode("lockdown") }, icon("lock"), t("site.lockdown")),
  );
}

async function setMode(mode) {
  const lockdown = mode === "lockdown";
  const reason = await ask({
    title: t(lockdown ? "site.lockdown_title" : "site.normal_title"),
    text: t(lockdown ? "site.lockdown_text" : "site.normal_text"),
    danger: lockdown,
  });
  emit("refocus");
  if (reason === null) return;
  try {
    await post(`/api/site/${mode}`, { reason });
    toast(t(lockdown ? "site.done_lockdown" : "site.done_normal"));
  } catch (err) {
    toast(errorText(err, t), "error");
  }
  await refreshSite();
}

async function refreshSite() {
  await Promise.all([loadSite(), loadDoors()].map((p) => p.catch(report)));
  renderSite();
}

// The user menu: who is logged in, and "Change my password" (a <details>: opens without script).
function renderUser() {
  const s = state.session;
  clear(
    $("#user"),
    h(
      "details",
      { class: "user-menu", id: "user-menu" },
      h("summary", { class: "user-summary", title: t("me.menu") }, icon("user"), h("span", { id: "user-name" }, s.username), h("span", { class: ["role", `role-${s.role}`], id: "user-role" }, t(`role.${s.role}`))),
      h("div", { class: "menu" }, h("button", { type: "button", class: "menu-item", id: "me-password", onclick: () => { closeUserMenu(); changeOwnPassword(); } }, t("me.password"))),
    ),
  );
}

function closeUserMenu() {
  $("#user-menu")?.removeAttribute("open");
}

function renderTabs() {
  $("#tab-accounts").hidden = !isAdmin();
  if (currentTab === "accounts" && !isAdmin()) currentTab = "visitor";
  for (const tab of document.querySelectorAll(".tab")) {
    const selected = tab.dataset.tab === currentTab;
    tab.setAttribute("aria-selected", String(selected));
    $(`#pane-${tab.dataset.tab}`).hidden = !selected;
  }
  if (currentTab === "visitor") renderVisitorForm();
  if (currentTab === "lookup") renderLookup();
  if (currentTab === "health") renderHealth();
  if (currentTab === "accounts") renderAccounts();
}

function rerenderAll() {
  if (!state.session) return;
  renderUser();
  renderSite();
  renderDoors();
  renderFeed();
  renderAlarms();
  renderHealth();
  renderPass();
  renderTabs();
}

const doorsChanged = debounce(() => loadDoors().then(renderSite).catch(() => {}), 250);
const alarmsChanged = debounce(() => loadAlarms().catch(() => {}), 250);
const siteChanged = debounce(refreshSite, 250);

function onEvent(event) {
  if (["door_state", "remote_open", "decision", "exit_request"].includes(event.type)) doorsChanged();
  if (event.type === "mode") siteChanged();
  if (["alarm", "alarm_ack", "door_state"].includes(event.type)) alarmsChanged();
  if (event.type === "access_list") loadNames().catch(() => {});
}

function init() {
  applyStatic(document);
  onUnauthorized(() => {
    if (state.session) showAuth(t("err.session"));
  });
  initAuth((session) => showMain(session).catch(report));
  initPassCheck();
  on("event", onEvent);
  onLangChange(rerenderAll);
  for (const el of document.querySelectorAll(".lang-switch")) el.addEventListener("click", toggleLang);
  $("#logout").addEventListener("click", async () => {
    await post("/api/logout").catch(() => {});
    showAuth();
  });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      currentTab = tab.dataset.tab;
      renderTabs();
      if (currentTab === "accounts") showAccounts();
    });
  }
  document.addEventListener("click", (ev) => {
    if (!ev.target.closest?.("#user-menu")) closeUserMenu();
  });
  $("#feed-all").addEventListener("change", (ev) => $("#feed").classList.toggle("quiet", !ev.target.checked));
  $("#alarm-strip").addEventListener("click", () => $("#alarms-panel").scrollIntoView({ behavior: "smooth" }));
  get("/api/session")
    .then((session) => showMain(session))
    .catch(() => showAuth());
}

init();
