// Gateway health (GET /api/health): cloud sync, devices, clock. Feeds the top bar's indicators and the
// health panel; polled, since most of it changes without an event.
import { optional } from "./api.js";
import { $, clear, h, icon } from "./dom.js";
import { code, t } from "./i18n.js";
import { dateTime, duration } from "./format.js";

let health = null;
let available = true;

export async function loadHealth() {
  if (!available) return;
  const answer = await optional("/api/health");
  if (answer === null) {
    available = false;
    $("#health-pills").hidden = true;
    $("#tab-health").hidden = true;
    return;
  }
  health = answer;
  renderHealth();
}

function syncState(sync) {
  if (!sync?.configured) return { tone: "muted", text: t("sync.none") };
  if (sync.connected === true) return { tone: "ok", text: t("sync.ok") };
  if (sync.connected === false) return { tone: "bad", text: t("sync.down") };
  return { tone: "warn", text: t("sync.unknown") };
}

export function renderHealth() {
  if (!health) return;
  const sync = syncState(health.sync);
  const devices = health.devices ?? [];
  const offline = devices.filter((d) => !d.online);
  const pills = [
    h("span", { class: ["pill", `pill-${sync.tone}`], id: "pill-sync" }, icon("cloud"), sync.text,
      health.sync?.outbox_depth ? h("small", {}, ` · ${t("sync.backlog", { n: health.sync.outbox_depth })}`) : null),
    h("span", { class: ["pill", offline.length ? "pill-bad" : "pill-ok"], id: "pill-devices" }, icon("chip"),
      offline.length ? t("devices.some", { n: offline.length }) : t("devices.ok")),
    health.clock_trusted === false ? h("span", { class: "pill pill-warn" }, t("clock.untrusted")) : null,
  ];
  clear($("#health-pills"), pills);
  const pane = $("#pane-health");
  if (!pane) return;
  const s = health.sync ?? {};
  clear(
    pane,
    h(
      "dl",
      { class: "kv" },
      kv(t("health.gateway"), health.gateway_id),
      kv(t("health.version"), health.version),
      kv(t("health.uptime"), duration(health.uptime_s)),
      kv(t("health.access_list"), health.access_list_version ?? "—"),
      kv(t("health.people"), health.people ?? "—"),
      kv(t("health.sync"), sync.text, sync.tone),
      kv(t("health.outbox"), s.outbox_depth ?? 0),
      kv(t("health.oldest"), s.oldest_unsent_age_s == null ? "—" : duration(s.oldest_unsent_age_s)),
      kv(t("health.downlink"), dateTime(s.last_downlink_at)),
      kv(t("health.clock"), health.clock_trusted === false ? t("clock.untrusted") : t("health.clock_ok"), health.clock_trusted === false ? "warn" : "ok"),
    ),
    h("h4", {}, t("health.devices")),
    h(
      "ul",
      { class: "devices" },
      devices.map((d) =>
        h("li", { class: ["device", d.online ? "ok" : "bad"], dataset: { device: d.id } }, h("span", { class: "dot" }), h("span", { class: "device-id" }, d.id), h("span", { class: "muted" }, code("devkind", d.kind)), h("span", { class: "device-state" }, d.online ? t("health.online") : t("health.offline"))),
      ),
    ),
  );
}

function kv(label, value, tone = undefined) {
  return h("div", { class: ["kv-row", tone && `tone-${tone}`] }, h("dt", {}, label), h("dd", {}, String(value)));
}
