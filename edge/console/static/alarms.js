// Open alarms (GET /api/alarms, oldest first): red until a guard acknowledges them with a note. The list is
// fetched again whenever an alarm-type event arrives on the live stream.
import { ApiError, optional, post } from "./api.js";
import { ask, toast } from "./dialog.js";
import { $, clear, h, icon } from "./dom.js";
import { code, t } from "./i18n.js";
import { dateTime, withoutSnapshot } from "./format.js";
import { doorName, emit, errorText } from "./state.js";

let alarms = [];
let available = true;

export async function loadAlarms() {
  if (!available) return;
  const answer = await optional("/api/alarms");
  if (answer === null) {
    available = false;
    $("#alarms-panel").hidden = true;
    $("#alarm-strip").hidden = true;
    return;
  }
  alarms = answer;
  renderAlarms();
}

export function renderAlarms() {
  if (!available) return;
  const list = $("#alarms");
  const count = $("#alarm-count");
  const panel = $("#alarms-panel");
  panel.classList.toggle("has-alarms", alarms.length > 0);
  count.textContent = alarms.length ? String(alarms.length) : "";
  count.hidden = alarms.length === 0;
  if (alarms.length === 0) clear(list, h("li", { class: "alarms-none" }, icon("check"), t("alarms.none")));
  else clear(list, alarms.map(row));
  const strip = $("#alarm-strip");
  strip.hidden = alarms.length === 0;
  if (alarms.length) {
    const newest = alarms[alarms.length - 1];
    clear(
      strip,
      icon("bell"),
      h("strong", {}, t("alarms.count", { n: alarms.length })),
      h("span", {}, [code("alarm", newest.kind), doorName(newest.door_id)].filter(Boolean).join(" · ")),
    );
  }
  emit("alarms", alarms);
}

function row(alarm) {
  return h(
    "li",
    { class: ["alarm", alarm.cleared && "alarm-cleared"], dataset: { alarm: alarm.id, kind: alarm.kind } },
    icon("alert", "icon alarm-icon"),
    h(
      "div",
      { class: "alarm-body" },
      h(
        "div",
        { class: "alarm-title" },
        h("strong", { class: "alarm-kind" }, code("alarm", alarm.kind)),
        alarm.count > 1 ? h("span", { class: "tag tag-bad" }, `×${alarm.count}`) : null,
        alarm.cleared ? h("span", { class: "tag" }, t("alarm.cleared")) : null,
      ),
      h("span", { class: "alarm-where" }, [doorName(alarm.door_id), alarm.device_id, dateTime(alarm.at)].filter(Boolean).join(" · ")),
      withoutSnapshot(alarm.detail) ? h("span", { class: "alarm-detail" }, withoutSnapshot(alarm.detail)) : null,
    ),
    h("button", { type: "button", class: "btn btn-ack", onclick: () => acknowledge(alarm) }, t("alarms.ack")),
  );
}

async function acknowledge(alarm) {
  const note = await ask({
    title: `${t("dlg.ack_title")}: ${code("alarm", alarm.kind)}`,
    text: [doorName(alarm.door_id), withoutSnapshot(alarm.detail)].filter(Boolean).join(" · "),
    label: t("dlg.note"),
    required: false,
  });
  emit("refocus");
  if (note === null) return;
  try {
    await post(`/api/alarms/${encodeURIComponent(alarm.id)}/ack`, { note });
    toast(t("alarms.acked"));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) toast(errorText(err, t), "error");
  }
  await loadAlarms().catch(() => {});
}
