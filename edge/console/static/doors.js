// Door tiles: mode, state (locked / unlocked / open / alarmed), the controller online or not, and
// "Open once" with a mandatory reason.
import { get, post } from "./api.js";
import { ask, toast } from "./dialog.js";
import { $, clear, h, icon } from "./dom.js";
import { t } from "./i18n.js";
import { emit, errorText, state } from "./state.js";

const ALARMED = new Set(["forced", "held"]);
const STATE_ICON = { locked: "lock", unlocked: "unlock", open: "door", forced: "alert", held: "alert" };

export async function loadDoors() {
  const doors = await get("/api/doors");
  state.doors = new Map(doors.map((d) => [d.id, d]));
  renderDoors();
  emit("doors", doors);
}

export function renderDoors() {
  const grid = $("#doors");
  clear(grid, [...state.doors.values()].map(tile));
}

function tile(door) {
  const alarmed = ALARMED.has(door.state);
  const cls = [
    "door",
    `door-${door.state}`,
    alarmed && "door-alarmed",
    !door.controller_online && "door-offline",
    door.mode !== "normal" && `door-mode-${door.mode}`,
  ];
  return h(
    "article",
    { class: cls, dataset: { door: door.id, state: door.state, mode: door.mode } },
    h(
      "header",
      { class: "door-head" },
      h("h3", { class: "door-name" }, door.name),
      h("span", { class: ["mode", `mode-${door.mode}`] }, t(`mode.${door.mode}`, {}, door.mode)),
    ),
    h(
      "div",
      { class: "door-state" },
      icon(STATE_ICON[door.state] ?? "door", "icon door-icon"),
      h("span", { class: "door-state-text" }, t(`door.state.${door.state}`, {}, door.state)),
    ),
    h(
      "div",
      { class: ["door-ctrl", door.controller_online ? "ok" : "bad"] },
      h("span", { class: "dot" }),
      `${door.controller_online ? t("door.online") : t("door.offline")} · ${door.controller}`,
    ),
    h(
      "button",
      {
        type: "button",
        class: "btn btn-primary btn-open",
        disabled: door.mode === "lockdown",
        onclick: () => openOnce(door),
      },
      icon("unlock"),
      t("door.open_once"),
    ),
  );
}

async function openOnce(door) {
  const reason = await ask({
    title: t("dlg.open_title", { door: door.name }),
    text: t("dlg.open_text"),
    quick: true,
  });
  emit("refocus");
  if (reason === null) return;
  try {
    await post(`/api/doors/${encodeURIComponent(door.id)}/open`, { reason });
    toast(t("door.opened", { door: door.name }));
  } catch (err) {
    toast(errorText(err, t), "error");
  }
  await loadDoors().catch(() => {});
}
