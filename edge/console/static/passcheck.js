// Pass check: a hand-held scanner in keyboard-wedge mode types the pass token into the scan field and
// presses Enter. The field keeps the focus (a click elsewhere on the page gives it back) so a scan is never
// typed into nothing. The check (POST /api/passes/check) uses nothing; "admit at door" presents the pass at
// a door for real (one use, a decision, the door released).
// With a QR camera reader at a gate, "scan with gate camera" (POST /api/passes/check-camera) takes the next
// code that camera reads for the same check instead of its door; the guard can cancel the wait. The token
// stays on the gateway, so a camera result offers no "admit at" buttons: the visitor shows it to the camera
// again and the door decides.
import { ApiError, optional, post } from "./api.js";
import { dialogOpen, toast } from "./dialog.js";
import { $, clear, h, icon } from "./dom.js";
import { code, t } from "./i18n.js";
import { range } from "./format.js";
import { doorName, errorText, on, state } from "./state.js";

let lastToken = null;
let lastResult = null;
let available = true;
let cameras = []; // GET /api/passes/cameras
let waiting = null; // {camera, abort: AbortController} while a camera check waits
const CAMERA_TIMEOUT_S = 15;

export function initPassCheck() {
  const form = $("#scan-form");
  const input = $("#scan");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    input.value = "";
    if (token) waiting?.abort.abort(); // a hand-held scan replaces a camera check still waiting
    if (token) check(token);
    input.focus();
  });
  // Give the focus back to the scan field whenever nothing else wants it.
  input.addEventListener("blur", () => setTimeout(refocus, 150));
  document.addEventListener("click", () => setTimeout(refocus, 0));
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.altKey || ev.metaKey || ev.key.length !== 1) return;
    if (!wantsKeys(document.activeElement)) input.focus(); // the key lands in the scan field
  });
  on("refocus", () => setTimeout(refocus, 0));
  renderIdle();
}

function wantsKeys(el) {
  if (!el || el === document.body) return false;
  // Text fields keep their keys; a ticked checkbox or a pressed button does not.
  return el.matches('input:not([type="checkbox"], [type="radio"], [type="button"], [type="submit"]), textarea, select, [contenteditable]');
}

export function refocus() {
  const input = $("#scan");
  if (!input || !available || $("#main").hidden || dialogOpen()) return;
  if (!wantsKeys(document.activeElement)) input.focus({ preventScroll: true });
}

export async function loadCameras() {
  cameras = (await optional("/api/passes/cameras")) ?? [];
  renderCameraButtons();
}

function renderCameraButtons() {
  const box = $("#camera-scan");
  box.hidden = cameras.length === 0 || !available;
  clear(
    box,
    cameras.map((cam) =>
      h(
        "button",
        { type: "button", class: "btn btn-camera", dataset: { camera: cam.id }, disabled: Boolean(waiting), onclick: () => checkWithCamera(cam) },
        icon("qr"),
        cameras.length === 1 ? t("pass.camera") : t("pass.camera_at", { door: doorName(cam.door_id) || cam.id }),
      ),
    ),
  );
}

async function checkWithCamera(cam) {
  if (waiting) return;
  waiting = { camera: cam, abort: new AbortController() };
  renderCameraButtons();
  renderWaiting();
  let result = null;
  try {
    result = await post("/api/passes/check-camera", { reader_id: cam.id, timeout_s: CAMERA_TIMEOUT_S }, waiting.abort.signal);
  } catch (err) {
    const cancelled = waiting.abort.signal.aborted;
    waiting = null;
    renderCameraButtons();
    rerender();
    if (cancelled) return;
    if (err instanceof ApiError && err.status === 504) toast(t("pass.camera_timeout", { seconds: CAMERA_TIMEOUT_S }), "error");
    else if (err instanceof ApiError && err.status === 409 && /already waiting/.test(err.detail)) toast(t("pass.camera_busy"), "error");
    else toast(errorText(err, t), "error");
    return;
  }
  waiting = null;
  renderCameraButtons();
  lastToken = null; // the token stays on the gateway
  lastResult = result;
  if (result.pass) state.names.set(result.pass.id, result.pass.visitor);
  renderResult(result, null);
}

function renderWaiting() {
  const box = $("#pass-result");
  box.className = "pass-result pass-waiting-box";
  delete box.dataset.valid;
  const cam = waiting.camera;
  clear(
    box,
    h("p", { class: "pass-waiting" }, icon("qr", "icon pass-waiting-icon"), t("pass.camera_waiting", { door: doorName(cam.door_id) || cam.id })),
    h("button", { type: "button", class: "btn btn-ghost pass-camera-cancel", onclick: () => waiting?.abort.abort() }, t("pass.camera_cancel")),
  );
}

function renderIdle() {
  clear($("#pass-result"), h("p", { class: "pass-idle" }, icon("qr", "icon pass-idle-icon"), t("pass.idle")));
  $("#pass-result").className = "pass-result";
}

async function check(token, doorId = null) {
  const body = doorId ? { token, door_id: doorId, admit: true } : { token };
  let result;
  try {
    result = await post("/api/passes/check", body);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && !doorId) {
      available = false;
      $("#pass-panel").hidden = true;
      toast(t("panel.unavailable"), "error");
      return;
    }
    toast(errorText(err, t), "error");
    return;
  }
  lastToken = token;
  lastResult = result;
  if (result.pass) state.names.set(result.pass.id, result.pass.visitor);
  renderResult(result, doorId);
}

export function rerender() {
  renderCameraButtons();
  if (waiting) renderWaiting();
  else if (lastResult) renderResult(lastResult, null);
  else renderIdle();
}

function renderResult(result, admittedAt) {
  const box = $("#pass-result");
  const p = result.pass;
  const valid = Boolean(result.valid);
  box.className = `pass-result ${valid ? "pass-valid" : "pass-invalid"}`;
  box.dataset.valid = String(valid);
  const reason = code("reason", result.reason, result.reason_text);
  const facts = p
    ? h(
        "dl",
        { class: "pass-facts" },
        fact(t("pass.visitor"), p.visitor ?? "—", "pass-visitor"),
        fact(t("pass.host"), p.host_unit ?? "—"),
        fact(t("pass.validity"), range(p.valid_from, p.valid_until)),
        fact(t("pass.uses_left"), p.uses_left === null || p.uses_left === undefined ? t("pass.unlimited") : String(p.uses_left)),
        fact(t("pass.doors"), (p.doors ?? []).map(doorName).join("、") || "—"),
        fact(t("pass.id"), p.id),
      )
    : null;
  let admitted = null;
  const admittedOk = Boolean(result.admitted ?? valid);
  if (admittedAt) {
    admitted = h(
      "p",
      { class: ["pass-admitted", admittedOk ? "ok" : "bad"] },
      admittedOk ? t("pass.admitted", { door: doorName(admittedAt) }) : t("pass.admit_refused", { reason }),
    );
  }
  const doors = valid && !admittedAt && !result.reader_id ? admitDoors(p) : [];
  const source = result.reader_id
    ? h("p", { class: "pass-source" }, t("pass.camera_read", { door: doorName(result.door_id) || result.reader_id }))
    : null;
  clear(
    box,
    h(
      "div",
      { class: "pass-verdict" },
      icon(valid ? "check" : "cross", "icon verdict-icon"),
      h("span", { class: "verdict-text" }, valid ? t("pass.valid") : t("pass.invalid")),
    ),
    h("p", { class: "pass-reason" }, reason),
    source,
    facts,
    admitted,
    doors.length
      ? h(
          "div",
          { class: "pass-admit" },
          h("span", {}, t("pass.admit")),
          doors.map((id) =>
            h("button", { type: "button", class: "btn btn-go", dataset: { door: id }, onclick: () => check(lastToken, id) }, icon("unlock"), doorName(id)),
          ),
        )
      : null,
  );
}

function admitDoors(p) {
  const allowed = p?.doors?.length ? p.doors : [...state.doors.keys()];
  return allowed.filter((id) => state.doors.has(id));
}

function fact(label, value, cls = undefined) {
  return h("div", { class: ["fact", cls] }, h("dt", {}, label), h("dd", {}, value));
}
