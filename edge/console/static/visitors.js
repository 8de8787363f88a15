// Walk-in visitors: the guard registers a visitor, the gateway signs a pass (POST /api/visitors) and the page
// shows its QR code with a Print button; the print stylesheet prints the pass card alone.
import { ApiError, post } from "./api.js";
import { toast } from "./dialog.js";
import { $, clear, h, icon } from "./dom.js";
import { t } from "./i18n.js";
import { fullDateTime } from "./format.js";
import { doorName, emit, errorText, state } from "./state.js";

let issued = null;

export function renderVisitorForm() {
  const pane = $("#pane-visitor");
  if (issued) {
    clear(pane, passCard(issued));
    return;
  }
  const doors = [...state.doors.values()].map((d) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "doors", value: d.id }), h("span", {}, d.name)),
  );
  const form = h(
    "form",
    { id: "visitor-form", class: "form-grid", onsubmit: submit },
    field("visitor.name", h("input", { name: "visitor", id: "visitor-name", required: true, maxlength: 40, autocomplete: "off", placeholder: t("visitor.name_placeholder") })),
    field("visitor.host", h("input", { name: "host_unit", id: "visitor-host", required: true, maxlength: 20, autocomplete: "off", placeholder: t("visitor.host_placeholder") })),
    h("fieldset", { class: "field wide" }, h("legend", { class: "field-label" }, t("visitor.doors"), h("small", { class: "muted" }, ` · ${t("visitor.default_doors")}`)), h("div", { class: "checks" }, doors)),
    field("visitor.hours", h("input", { name: "hours", type: "number", min: "0.25", max: "72", step: "0.25", inputmode: "decimal" })),
    field("visitor.uses", h("input", { name: "uses", type: "number", min: "1", max: "50", step: "1", inputmode: "numeric" })),
    field("visitor.note", h("input", { name: "note", maxlength: 200, autocomplete: "off" }), "wide"),
    h("div", { class: "form-actions wide" }, h("button", { type: "submit", class: "btn btn-primary" }, icon("qr"), t("visitor.submit"))),
    h("p", { class: "form-error wide", id: "visitor-error", role: "alert" }),
  );
  clear(pane, form);
}

function field(key, input, cls = "") {
  return h("label", { class: ["field", cls] }, h("span", { class: "field-label" }, t(key)), input);
}

async function submit(ev) {
  ev.preventDefault();
  const form = ev.target;
  const data = new FormData(form);
  const body = { visitor: data.get("visitor").trim(), host_unit: data.get("host_unit").trim() };
  const doors = data.getAll("doors");
  if (doors.length) body.doors = doors;
  if (data.get("hours")) body.hours = Number(data.get("hours"));
  if (data.get("uses")) body.uses = Number(data.get("uses"));
  if (data.get("note").trim()) body.note = data.get("note").trim();
  const error = $("#visitor-error");
  error.textContent = "";
  try {
    issued = { ...(await post("/api/visitors", body)), visitor: body.visitor, host_unit: body.host_unit };
    state.names.set(issued.pass_id, issued.visitor);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 409)) {
      error.textContent = err.status === 404 ? t("panel.unavailable") : `${t("visitor.not_configured")}: ${err.detail}`;
    } else {
      error.textContent = errorText(err, t);
    }
    return;
  }
  toast(t("visitor.issued"));
  renderVisitorForm();
  emit("refocus");
}

function passCard(p) {
  return h(
    "div",
    { class: "issued" },
    h(
      "section",
      { class: "pass-card printable", id: "pass-card" },
      h("h3", {}, `${state.site?.site_name ?? ""} · ${t("visitor.pass_heading")}`),
      h("img", { class: "qr", id: "pass-qr", src: `data:image/png;base64,${p.qr_png_base64}`, alt: p.pass_id }),
      h(
        "dl",
        { class: "pass-facts" },
        h("div", { class: "fact pass-visitor" }, h("dt", {}, t("pass.visitor")), h("dd", {}, p.visitor)),
        h("div", { class: "fact" }, h("dt", {}, t("pass.host")), h("dd", {}, p.host_unit)),
        h("div", { class: "fact" }, h("dt", {}, t("pass.validity")), h("dd", {}, `${fullDateTime(p.valid_from)} – ${fullDateTime(p.valid_until)}`)),
        h("div", { class: "fact" }, h("dt", {}, t("pass.doors")), h("dd", {}, (p.doors ?? []).map(doorName).join("、"))),
        h("div", { class: "fact" }, h("dt", {}, t("visitor.uses")), h("dd", {}, String(p.uses ?? "—"))),
        h("div", { class: "fact" }, h("dt", {}, t("pass.id")), h("dd", {}, p.pass_id)),
      ),
    ),
    h(
      "div",
      { class: "form-actions" },
      h("button", { type: "button", class: "btn btn-primary", id: "print-pass", onclick: () => window.print() }, t("visitor.print")),
      h("button", { type: "button", class: "btn btn-ghost", onclick: () => { issued = null; renderVisitorForm(); } }, t("visitor.again")),
    ),
  );
}
