// Look up residents (GET /api/people?q=) and passes (GET /api/passes?q=) by name, unit or card digits.
import { optional } from "./api.js";
import { $, clear, h, icon } from "./dom.js";
import { code, t } from "./i18n.js";
import { dateTime, range } from "./format.js";
import { errorText, state } from "./state.js";

let last = null;

export function renderLookup() {
  const pane = $("#pane-lookup");
  const input = h("input", { id: "lookup-q", type: "search", autocomplete: "off", placeholder: t("lookup.placeholder"), value: last?.q ?? "" });
  clear(
    pane,
    h("form", { class: "lookup-form", onsubmit: (ev) => { ev.preventDefault(); search(input.value.trim()); } }, input, h("button", { type: "submit", class: "btn btn-primary" }, t("lookup.search"))),
    h("div", { id: "lookup-results" }),
  );
  if (last) showResults(last);
}

async function search(q) {
  if (!q) return;
  const qs = `?q=${encodeURIComponent(q)}`;
  try {
    const [people, passes] = await Promise.all([optional(`/api/people${qs}`), optional(`/api/passes${qs}`)]);
    last = { q, people, passes };
    for (const p of people ?? []) state.names.set(p.id, p.name);
    for (const p of passes ?? []) state.names.set(p.id, p.visitor);
    showResults(last);
  } catch (err) {
    clear($("#lookup-results"), h("p", { class: "form-error" }, errorText(err, t)));
  }
}

function showResults({ people, passes }) {
  const out = $("#lookup-results");
  if (people === null && passes === null) {
    clear(out, h("p", { class: "muted" }, t("panel.unavailable")));
    return;
  }
  clear(
    out,
    people === null ? null : h("h4", {}, t("lookup.people")),
    people === null ? null : list(people, person),
    passes === null ? null : h("h4", {}, t("lookup.passes")),
    passes === null ? null : list(passes, pass),
  );
}

function list(items, render) {
  if (!items.length) return h("p", { class: "muted" }, t("lookup.none"));
  return h("ul", { class: "results" }, items.map(render));
}

function person(p) {
  return h(
    "li",
    { class: "result", dataset: { person: p.id } },
    h("div", { class: "result-main" }, icon("user"), h("strong", {}, p.name), h("span", { class: "tag" }, code("kind", p.kind)), p.unit ? h("span", { class: "tag" }, p.unit) : null, p.face_enrolled ? h("span", { class: "tag tag-ok" }, t("lookup.face")) : null),
    h("div", { class: "result-sub" }, [range(p.valid_from, p.valid_until), ...(p.credentials ?? []).map((c) => `${code("cred", c.type)} ${c.masked}`)].filter(Boolean).join(" · ")),
  );
}

function pass(p) {
  return h(
    "li",
    { class: ["result", p.revoked && "revoked"], dataset: { pass: p.id } },
    h("div", { class: "result-main" }, icon("qr"), h("strong", {}, p.visitor ?? p.id), p.host_unit ? h("span", { class: "tag" }, p.host_unit) : null, p.revoked ? h("span", { class: "tag tag-bad" }, t("lookup.revoked")) : null),
    h("div", { class: "result-sub" }, [p.id, p.valid_until ? t("lookup.until", { t: dateTime(p.valid_until) }) : "", t("lookup.uses", { n: p.uses ?? 0 })].filter(Boolean).join(" · ")),
  );
}
