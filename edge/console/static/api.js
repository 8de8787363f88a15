// The gateway's REST API (edge/console/api.py): JSON in and out, the session in an HttpOnly cookie, and the
// CSRF token from the login/session answer in the X-CSRF-Token header of every POST. A 401 anywhere but the
// login itself means the session is gone: the app goes back to the login screen.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

let csrfToken = null;
let unauthorized = () => {};

export function setCsrf(token) {
  csrfToken = token;
}

export function onUnauthorized(fn) {
  unauthorized = fn;
}

function detailOf(data, status) {
  const detail = data?.detail;
  if (typeof detail === "string") return detail;
  // FastAPI's validation errors: a list of {loc, msg}
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc ?? []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

// `signal` (an AbortSignal) gives up a request: it throws an ApiError with status 0 and detail "aborted".
export async function request(method, path, body = undefined, signal = undefined) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch {
    throw new ApiError(0, signal?.aborted ? "aborted" : "network");
  }
  const data = await response.json().catch(() => null);
  if (response.status === 401 && !["/api/login", "/api/setup", "/api/session"].includes(path)) {
    unauthorized();
  }
  if (!response.ok) throw new ApiError(response.status, detailOf(data, response.status));
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}, signal = undefined) => request("POST", path, body, signal);

// For a panel whose endpoint a gateway may not have: null on 404 (the panel hides itself).
export async function optional(path) {
  try {
    return await get(path);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}
