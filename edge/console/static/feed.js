// The live event feed: the last 50 events from GET /api/events, then the server-sent stream
// (GET /api/events/stream, one message per event, named by its type). EventSource reconnects by itself after
// a network drop; when the server closes the stream for good (a 401, a restart) the feed reopens it after a
// pause and reloads the recent events, so nothing that happened meanwhile is missed.
import { get } from "./api.js";
import { $, clear, debounce, h } from "./dom.js";
import { code, t } from "./i18n.js";
import { clock, withoutSnapshot } from "./format.js";
import { doorName, emit, state } from "./state.js";

const MAX_ROWS = 200;
// The event types the gateway publishes (edge/events.py, edge/passes/events.py); SSE delivers named events
// only to listeners of that name.
export const EVENT_TYPES = [
  "decision", "alarm", "door_state", "mode", "exit_request", "remote_open", "command", "sync_error",
  "access_list", "console", "pass_use", "walkin_registered", "alarm_ack",
];

let source = null;
let retryTimer = null;
let stopped = true;
let records = []; // [{seq|null, event, live?}] newest first

export async function startFeed() {
  stopped = false;
  connect();
}

export function stopFeed() {
  stopped = true;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  setStatus("connecting");
}

// The stored events, merged with the live ones that arrived meanwhile. The stream is opened first and the
// log read once it is open, so an event that happens in between is in one or the other (or both: the same
// record twice is shown once).
async function reload() {
  const since = records.filter((r) => r.live);
  const stored = await get("/api/events?limit=50");
  const seen = new Set(stored.map((r) => canonical(r.event)));
  const fresh = since.filter((r) => !seen.has(canonical(r.event)));
  records = [...fresh, ...stored].sort((a, b) => Date.parse(b.event.at) - Date.parse(a.event.at));
  if (records.length > MAX_ROWS) records.length = MAX_ROWS;
  render();
}

// One spelling per record whatever its key order (the log stores sorted keys, the stream does not).
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// Live events carry no sequence number; a face snapshot needs one for its thumbnail URL, so the stored
// copies are fetched again shortly after (the writer thread stores an event within a moment).
const refreshSeqs = debounce(() => reload().catch(() => {}), 1500);

function connect() {
  if (stopped) return;
  setStatus("connecting");
  const es = new EventSource("/api/events/stream");
  source = es;
  es.addEventListener("open", () => {
    if (es !== source) return;
    reload()
      .then(() => setStatus("live"))
      .catch(() => {}); // a 401 sends the guard back to the login screen
  });
  for (const type of EVENT_TYPES) {
    es.addEventListener(type, (message) => {
      if (es !== source) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      const seq = message.lastEventId ? Number(message.lastEventId) : (event.seq ?? null);
      if (event.type === "walkin_registered" && event.pass) state.names.set(event.pass, event.label);
      add({ seq, event, live: true });
      if (event.snapshot && seq === null) refreshSeqs();
      emit("event", event);
    });
  }
  es.addEventListener("error", () => {
    if (es !== source) return;
    setStatus("reconnecting");
    if (es.readyState === EventSource.CLOSED) {
      source = null;
      clearTimeout(retryTimer);
      // Closed for good (a 401, the gateway restarting): check the session (a 401 sends the guard back to
      // the login screen), then open a new stream.
      retryTimer = setTimeout(() => {
        get("/api/session")
          .then(() => connect())
          .catch(() => { retryTimer = setTimeout(connect, 5000); });
      }, 2000);
    }
  });
}

let status = "connecting";

function setStatus(next) {
  status = next;
  const el = $("#feed-status");
  if (!el) return;
  el.className = `feed-status feed-${status}`;
  el.textContent = status === "live" ? t("feed.live") : t("feed.reconnecting");
}

function add(record) {
  records.unshift(record);
  if (records.length > MAX_ROWS) records.length = MAX_ROWS;
  const list = $("#feed");
  const empty = list.querySelector(".feed-empty");
  if (empty) empty.remove();
  const row = renderRow(record);
  row.classList.add("ev-new");
  list.prepend(row);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
}

export function render() {
  const list = $("#feed");
  if (!list) return;
  if (records.length === 0) clear(list, h("li", { class: "feed-empty" }, t("feed.empty")));
  else clear(list, records.map(renderRow));
  setStatus(status);
}

function who(ev) {
  const name = ev.person_name ?? ev.visitor ?? ev.label;
  if (name) return name;
  if (ev.person) return state.names.get(ev.person) ?? ev.person;
  if (ev.pass) return state.names.get(ev.pass) ?? ev.pass;
  return "";
}

// "console:guard1" -> "guard1": who pressed the button, without the channel.
function byName(by) {
  return (by ?? "").replace(/^console:/, "");
}

function describe(ev) {
  switch (ev.type) {
    case "decision":
      return {
        tone: ev.granted ? "granted" : "denied",
        badge: ev.granted ? t("feed.granted") : t("feed.denied"),
        who: who(ev) || (ev.credential_kind === "pass" ? "" : ev.credential ?? ""),
        cred: code("cred", ev.credential_kind),
        text: code("reason", ev.reason) + (ev.apb_violation ? ` · ${t("reason.anti_passback")}` : ""),
      };
    case "alarm":
      return {
        tone: ev.active === false ? "info" : "alarm",
        badge: t("event.alarm"),
        who: code("alarm", ev.alarm),
        text: [ev.active === false ? t("alarm.cleared") : "", ev.device ?? "", withoutSnapshot(ev.detail)].filter(Boolean).join(" · "),
      };
    case "door_state":
      return {
        tone: ["forced", "held"].includes(ev.state) ? "alarm" : "info",
        badge: t("event.door_state"),
        who: t(`door.state.${ev.state}`, {}, ev.state),
        text: "",
      };
    case "mode":
      return {
        tone: ev.mode === "lockdown" ? "alarm" : "action",
        badge: t("event.mode"),
        who: t(`mode.${ev.mode}`, {}, ev.mode),
        text: [ev.reason, ev.by ? t("feed.by", { by: byName(ev.by) }) : ""].filter(Boolean).join(" · "),
      };
    case "remote_open":
      return {
        tone: "action",
        badge: t("event.remote_open"),
        who: byName(ev.by),
        text: ev.reason ?? "",
      };
    case "console":
      return {
        tone: ev.ok ? "info" : "denied",
        badge: t("event.console"),
        who: ev.by ?? "",
        text: [code("action", ev.action), ev.ok ? "" : t("action.refused"), ev.detail ?? ""].filter(Boolean).join(" · "),
      };
    case "command":
      return {
        tone: ev.ok ? "action" : "denied",
        badge: t("event.command"),
        who: ev.by ?? "",
        text: [ev.command, ev.error ?? "", ev.reason ?? ""].filter(Boolean).join(" · "),
      };
    case "pass_use":
      return { tone: "info", badge: t("event.pass_use"), who: who(ev), text: `${ev.gateway ?? ""} ×${ev.count ?? ""}` };
    case "walkin_registered":
      return { tone: "action", badge: t("event.walkin_registered"), who: ev.label ?? "", text: [ev.host_unit, byName(ev.by)].filter(Boolean).join(" · ") };
    case "access_list":
      return { tone: "info", badge: t("event.access_list"), who: `v${ev.version}`, text: ev.source ?? "" };
    case "sync_error":
      return { tone: "denied", badge: t("event.sync_error"), who: ev.error ?? "", text: ev.detail ?? "" };
    default:
      return { tone: "info", badge: code("event", ev.type), who: ev.by ?? "", text: ev.detail ?? ev.reason ?? "" };
  }
}

function renderRow({ seq, event: ev }) {
  const d = describe(ev);
  const thumb =
    ev.snapshot && seq !== null && seq !== undefined
      ? h("img", { class: "ev-thumb", src: `/api/events/${seq}/thumbnail`, alt: t("feed.face"), loading: "lazy" })
      : null;
  return h(
    "li",
    { class: ["ev", `ev-${ev.type}`, `tone-${d.tone}`], dataset: { type: ev.type, seq: seq ?? "" } },
    h("time", { class: "ev-time", datetime: ev.at }, clock(ev.at)),
    h("span", { class: "ev-badge" }, d.badge),
    h("span", { class: "ev-door" }, doorName(ev.door) || t("feed.unknown_door")),
    h("span", { class: "ev-who" }, d.who),
    d.cred ? h("span", { class: "ev-cred" }, d.cred) : null,
    h("span", { class: "ev-text" }, d.text),
    thumb,
  );
}
