// The two screens before the console: log in, or (first run) create the first admin with the one-time
// setup code the gateway printed to its log.
import { ApiError, post } from "./api.js";
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { errorText } from "./state.js";

let loggedIn = () => {};

export function initAuth(onLoggedIn) {
  loggedIn = onLoggedIn;
  for (const tab of document.querySelectorAll(".auth-tab")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  $("#login-form").addEventListener("submit", login);
  $("#setup-form").addEventListener("submit", setup);
}

export function showTab(name, message = "") {
  for (const tab of document.querySelectorAll(".auth-tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  $("#login-form").hidden = name !== "login";
  $("#setup-form").hidden = name !== "setup";
  setMessage(name, message);
  const first = name === "login" ? $("#login-username") : $("#setup-code");
  first.focus();
}

function setMessage(form, message, kind = "error") {
  const el = $(`#${form}-message`);
  el.textContent = message;
  el.className = `form-message form-${kind}`;
}

async function login(ev) {
  ev.preventDefault();
  const username = $("#login-username").value.trim();
  const password = $("#login-password").value;
  try {
    const session = await post("/api/login", { username, password });
    $("#login-password").value = "";
    setMessage("login", "");
    loggedIn(session);
  } catch (err) {
    const text =
      err instanceof ApiError && err.status === 401 ? t("auth.wrong")
        : err instanceof ApiError && err.status === 423 ? t("auth.locked")
          : errorText(err, t);
    setMessage("login", text);
    $("#login-password").select();
  }
}

async function setup(ev) {
  ev.preventDefault();
  const password = $("#setup-password").value;
  if (password !== $("#setup-password2").value) {
    setMessage("setup", t("auth.mismatch"));
    return;
  }
  const body = { code: $("#setup-code").value.trim(), username: $("#setup-username").value.trim(), password };
  try {
    const session = await post("/api/setup", body);
    $("#setup-password").value = "";
    $("#setup-password2").value = "";
    loggedIn(session);
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) showTab("login", t("auth.setup_done"));
    else if (err instanceof ApiError && err.status === 403) setMessage("setup", t("auth.wrong_code"));
    else setMessage("setup", errorText(err, t));
  }
}
