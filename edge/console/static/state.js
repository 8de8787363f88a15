// What the page knows about the gateway, shared by the panels, and a tiny event hub between them.

export const state = {
  session: null, // {username, role, csrf_token}
  site: null, // GET /api/site, or null on a gateway without it
  doors: new Map(), // id -> door tile from GET /api/doors
  names: new Map(), // person id or pass id -> display name (from /api/people and /api/passes)
};

export function isAdmin() {
  return state.session?.role === "admin";
}

export function doorName(id) {
  if (!id) return "";
  return state.doors.get(id)?.name ?? id;
}

const handlers = new Map();

export function on(name, fn) {
  if (!handlers.has(name)) handlers.set(name, new Set());
  handlers.get(name).add(fn);
}

export function emit(name, payload) {
  for (const fn of handlers.get(name) ?? []) fn(payload);
}

// Shows an error from the API in the guard's language.
export function errorText(err, t) {
  if (!err || err.status === undefined) return t("err.generic", { detail: String(err) });
  if (err.status === 0) return t("err.network");
  if (err.status === 403) return `${t("err.forbidden")}: ${err.detail}`;
  return t("err.generic", { detail: err.detail });
}
