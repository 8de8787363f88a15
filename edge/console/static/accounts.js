// Accounts (admins only): the list from GET /api/accounts, a form that creates a guard or an admin, and per
// account disable/enable, role change and password reset. "Change my password" (everyone) is in the user menu
// of the top bar. The gateway ends the sessions a change makes wrong; the page only reloads the list.
import { ApiError, get, post } from "./api.js";
import { form, toast } from "./dialog.js";
import { $, clear, h, icon } from "./dom.js";
import { t } from "./i18n.js";
import { dateTime } from "./format.js";
import { emit, errorText, state } from "./state.js";

let accounts = null; // the last list, for the admin who fetched it
let owner = null;

export async function loadAccounts() {
  const list = await get("/api/accounts");
  accounts = list;
  owner = state.session?.username ?? null;
  renderAccounts();
}

// The pane from the last list (fetching it first if there is none for this admin).
export function renderAccounts() {
  const pane = $("#pane-accounts");
  if (!pane || !state.session) return;
  const mine = owner === state.session.username ? accounts : null;
  clear(
    pane,
    h("h4", {}, t("accounts.list")),
    mine === null ? h("p", { class: "muted" }, "…") : h("ul", { class: "results accounts", id: "accounts" }, mine.map(row)),
    h("h4", {}, t("accounts.new")),
    newAccountForm(),
  );
}

export function showAccounts() {
  renderAccounts();
  loadAccounts().catch((err) => toast(errorText(err, t), "error"));
}

function field(key, input, cls = "") {
  return h("label", { class: ["field", cls] }, h("span", { class: "field-label" }, t(key)), input);
}

function newAccountForm() {
  const role = h(
    "select",
    { name: "role", id: "account-role" },
    h("option", { value: "guard" }, t("role.guard")),
    h("option", { value: "admin" }, t("role.admin")),
  );
  return h(
    "form",
    { id: "account-form", class: "form-grid", autocomplete: "off", onsubmit: create },
    field("auth.username", h("input", { name: "username", id: "account-username", required: true, maxlength: 32, autocomplete: "off", autocapitalize: "none", spellcheck: "false" })),
    field("accounts.role", role),
    field("auth.password", h("input", { name: "password", id: "account-password", type: "password", required: true, autocomplete: "new-password" })),
    field("auth.password2", h("input", { name: "password2", id: "account-password2", type: "password", required: true, autocomplete: "new-password" })),
    h("div", { class: "form-actions wide" }, h("button", { type: "submit", class: "btn btn-primary", id: "account-create" }, icon("user"), t("accounts.create"))),
    h("p", { class: "form-error wide", id: "account-error", role: "alert" }),
  );
}

async function create(ev) {
  ev.preventDefault();
  const data = new FormData(ev.target);
  const error = $("#account-error");
  const username = data.get("username").trim().toLowerCase();
  if (data.get("password") !== data.get("password2")) {
    error.textContent = t("auth.mismatch");
    return;
  }
  error.textContent = "";
  try {
    await post("/api/accounts", { username, password: data.get("password"), role: data.get("role") });
  } catch (err) {
    error.textContent = problem(err);
    return;
  }
  toast(t("accounts.created", { name: username }));
  await loadAccounts().catch((err) => toast(errorText(err, t), "error"));
  emit("refocus");
}

// What went wrong, in the admin's language.
function problem(err) {
  if (!(err instanceof ApiError)) return errorText(err, t);
  const short = /at least (\d+)/.exec(err.detail ?? "");
  if (err.status === 422 && short) return t("accounts.too_short", { n: short[1] });
  if (err.status === 422 && String(err.detail).startsWith("username")) return t("accounts.bad_name");
  if (err.status === 409 && String(err.detail).includes("last enabled admin")) return t("accounts.last_admin");
  if (err.status === 409 && String(err.detail).endsWith("exists")) return t("accounts.exists");
  return errorText(err, t);
}

function row(a) {
  const me = a.username === state.session?.username;
  const tags = [
    h("span", { class: ["role", `role-${a.role}`] }, t(`role.${a.role}`)),
    me ? h("span", { class: "tag" }, t("accounts.you")) : null,
    a.disabled ? h("span", { class: "tag tag-bad account-disabled" }, t("accounts.disabled")) : null,
    a.locked_out ? h("span", { class: "tag tag-warn" }, t("accounts.locked")) : null,
    a.sessions ? h("span", { class: "tag tag-ok" }, t("accounts.sessions", { n: a.sessions })) : null,
  ];
  const sub = [
    t("accounts.created_at", { t: dateTime(a.created_at) }),
    a.last_login_at ? t("accounts.last_login", { t: dateTime(a.last_login_at) }) : t("accounts.never"),
  ].join(" · ");
  // An admin's own account changes only through "Change my password": no locking oneself out by a click.
  const actions = me
    ? null
    : h(
        "div",
        { class: "account-actions" },
        a.disabled
          ? h("button", { type: "button", class: "btn btn-ghost btn-account-enable", onclick: () => setDisabled(a, false) }, t("accounts.enable"))
          : h("button", { type: "button", class: "btn btn-ghost btn-account-disable", onclick: () => setDisabled(a, true) }, t("accounts.disable")),
        h("button", { type: "button", class: "btn btn-ghost btn-account-role", onclick: () => setRole(a) }, t(a.role === "admin" ? "accounts.make_guard" : "accounts.make_admin")),
        h("button", { type: "button", class: "btn btn-ghost btn-account-reset", onclick: () => resetPassword(a) }, t("accounts.reset")),
      );
  return h(
    "li",
    { class: ["result", "account", a.disabled && "revoked"], dataset: { account: a.username } },
    h("div", { class: "result-main" }, icon("user"), h("strong", {}, a.username), tags),
    h("div", { class: "result-sub" }, sub),
    actions,
  );
}

// Runs an account change from a dialog: the error stays in the dialog, success reloads the list.
function change(path, body, done) {
  return async (values) => {
    try {
      await post(path, body(values));
    } catch (err) {
      return problem(err);
    }
    toast(done);
    await loadAccounts().catch(() => {});
    return null;
  };
}

async function setDisabled(a, disabled) {
  const verb = disabled ? "disable" : "enable";
  const path = `/api/accounts/${encodeURIComponent(a.username)}/${verb}`;
  await form({
    title: t(`accounts.${verb}_title`, { name: a.username }),
    text: t(`accounts.${verb}_text`),
    danger: disabled,
    submit: change(path, () => ({}), t(`accounts.done_${verb}`, { name: a.username })),
  });
  emit("refocus");
}

async function setRole(a) {
  const role = a.role === "admin" ? "guard" : "admin";
  await form({
    title: t("accounts.role_title", { name: a.username }),
    text: t("accounts.role_text", { name: a.username, role: t(`role.${role}`) }),
    submit: change(`/api/accounts/${encodeURIComponent(a.username)}/role`, () => ({ role }), t("accounts.done_role", { name: a.username })),
  });
  emit("refocus");
}

// Checks the two new-password fields agree before anything is sent.
function matching(submit) {
  return async (v) => (v.password !== v.password2 ? t("auth.mismatch") : submit(v));
}

async function resetPassword(a) {
  const path = `/api/accounts/${encodeURIComponent(a.username)}/password`;
  await form({
    title: t("accounts.reset_title", { name: a.username }),
    text: t("accounts.reset_text"),
    fields: [
      { name: "password", label: t("accounts.new_password"), type: "password", autocomplete: "new-password" },
      { name: "password2", label: t("accounts.new_password2"), type: "password", autocomplete: "new-password" },
    ],
    submit: matching(change(path, (v) => ({ password: v.password }), t("accounts.done_reset", { name: a.username }))),
  });
  emit("refocus");
}

// "Change my password", for guards and admins alike; the gateway logs the account's other screens out.
export async function changeOwnPassword() {
  const changed = await form({
    title: t("me.password"),
    text: t("me.password_text"),
    fields: [
      { name: "current", label: t("me.current"), type: "password", autocomplete: "current-password" },
      { name: "password", label: t("accounts.new_password"), type: "password", autocomplete: "new-password" },
      { name: "password2", label: t("accounts.new_password2"), type: "password", autocomplete: "new-password" },
    ],
    submit: matching(async (v) => {
      try {
        await post("/api/me/password", { current_password: v.current, new_password: v.password });
      } catch (err) {
        if (err instanceof ApiError && err.status === 403 && err.detail === "wrong current password") return t("me.wrong_current");
        if (err instanceof ApiError && err.status === 423) return t("auth.locked");
        return problem(err);
      }
      return null;
    }),
  });
  if (changed) toast(t("me.changed"));
  emit("refocus");
}
