// The console's only way to the server: /api/v1 with the caller's bearer token.
// The token lives in sessionStorage (this tab only) and travels in the Authorization
// header, never in a cookie, so another site cannot make the browser send it (no CSRF).

const TOKEN_KEY = "modelyard.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.body = body;
  }
}

/** Path segment: every user-supplied name is encoded before it goes into a URL. */
export const seg = (value) => encodeURIComponent(String(value));

export async function api(method, path, { query, body } = {}) {
  const url = new URL("/api/v1" + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 500) };
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body: body || {} });
export const put = (path, body) => api("PUT", path, { body: body || {} });

/** The same rule as the server's Principal.can: exact, "*", "<domain>.*", "*.<action>". */
export function can(me, permission) {
  if (!me) return false;
  const [domain, action] = permission.split(".", 2);
  const granted = new Set(me.permissions);
  return [permission, "*", `${domain}.*`, `*.${action}`].some((p) => granted.has(p));
}
