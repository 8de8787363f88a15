// The one modal dialog (a native <dialog>) and the toast line. A dialog asks for a reason or a note and
// resolves to the text, or null when cancelled.
import { $, clear, h } from "./dom.js";
import { t } from "./i18n.js";

const QUICK_REASONS = ["quick.delivery", "quick.visitor", "quick.resident", "quick.maintenance", "quick.emergency"];

// ask({title, text, label, required, quick, danger}) -> Promise<string|null>
export function ask({ title, text = "", label = t("dlg.reason"), required = true, quick = false, danger = false }) {
  const dialog = $("#dialog");
  return new Promise((resolve) => {
    const input = h("textarea", {
      id: "dialog-input",
      rows: 2,
      maxlength: 500,
      placeholder: required ? t("dlg.reason_placeholder") : "",
    });
    const error = h("p", { class: "dialog-error", role: "alert" });
    const confirm = h("button", { type: "submit", class: ["btn", danger ? "btn-danger" : "btn-primary"], id: "dialog-confirm" }, t("dlg.confirm"));
    const cancel = h("button", { type: "button", class: "btn btn-ghost", id: "dialog-cancel" }, t("dlg.cancel"));
    const chips = quick
      ? h(
          "div",
          { class: "chips" },
          QUICK_REASONS.map((key) =>
            h("button", { type: "button", class: "chip", onclick: () => { input.value = t(key); input.focus(); } }, t(key)),
          ),
        )
      : null;
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      dialog.close();
      resolve(value);
    };
    const form = h(
      "form",
      {
        method: "dialog",
        class: ["dialog-body", danger && "dialog-danger"],
        onsubmit: (ev) => {
          ev.preventDefault();
          const value = input.value.trim();
          if (required && !value) {
            error.textContent = t("dlg.reason_required");
            input.focus();
            return;
          }
          finish(value);
        },
      },
      h("h2", {}, title),
      text ? h("p", { class: "dialog-text" }, text) : null,
      h("label", { for: "dialog-input", class: "field-label" }, label),
      input,
      chips,
      error,
      h("div", { class: "dialog-actions" }, cancel, confirm),
    );
    cancel.addEventListener("click", () => finish(null));
    dialog.addEventListener("cancel", () => finish(null), { once: true });
    clear(dialog, form);
    dialog.showModal();
    input.focus();
  });
}

export function dialogOpen() {
  return $("#dialog").open;
}

let toastTimer = null;

// A short message at the bottom of the screen: kind "ok" (green) or "error" (red).
export function toast(message, kind = "ok") {
  const el = $("#toast");
  el.textContent = message;
  el.className = `toast toast-${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 6000 : 3000);
}

// A dialog with input fields (or none: a confirmation). form({title, text, fields, danger, submit}):
// fields are [{name, label, type, autocomplete}]; on confirm, `submit(values)` runs with the dialog still open
// and returns an error text to show there (the dialog stays) or null (it closes). Resolves to true if
// submitted, false if cancelled.
export function form({ title, text = "", fields = [], danger = false, submit }) {
  const dialog = $("#dialog");
  return new Promise((resolve) => {
    const inputs = fields.map((f) =>
      h("input", { id: `dialog-${f.name}`, name: f.name, type: f.type ?? "text", autocomplete: f.autocomplete ?? "off", required: true, maxlength: 256, autocapitalize: "none", spellcheck: "false" }),
    );
    const error = h("p", { class: "dialog-error", role: "alert" });
    const confirm = h("button", { type: "submit", class: ["btn", danger ? "btn-danger" : "btn-primary"], id: "dialog-confirm" }, t("dlg.confirm"));
    const cancel = h("button", { type: "button", class: "btn btn-ghost", id: "dialog-cancel" }, t("dlg.cancel"));
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      dialog.close();
      resolve(value);
    };
    const body = h(
      "form",
      {
        method: "dialog",
        class: ["dialog-body", danger && "dialog-danger"],
        onsubmit: async (ev) => {
          ev.preventDefault();
          const values = Object.fromEntries(inputs.map((input) => [input.name, input.value]));
          confirm.disabled = true;
          error.textContent = "";
          const problem = await submit(values);
          confirm.disabled = false;
          if (problem) {
            error.textContent = problem;
            return;
          }
          finish(true);
        },
      },
      h("h2", {}, title),
      text ? h("p", { class: "dialog-text" }, text) : null,
      fields.map((f, i) => h("label", { class: "field" }, h("span", { class: "field-label" }, f.label), inputs[i])),
      error,
      h("div", { class: "dialog-actions" }, cancel, confirm),
    );
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", () => finish(false), { once: true });
    clear(dialog, body);
    dialog.showModal();
    (inputs[0] ?? confirm).focus();
  });
}
