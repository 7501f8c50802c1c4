// The admin REST API: the session cookie and the CSRF header on every change; an error answer
// becomes an `ApiError` (its message, field and request id); a 401 ends the session.

import { state } from './state.js';

/** What a 401 answer to a signed-in request does (session.js: back to the login form). */
let unauthorized = () => {};

export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const e = body && body.error;
    super(e && e.message ? e.message : fallback);
    this.status = status;
    this.type = e && e.type;
    this.field = e && e.field;
    this.requestId = body && body.request_id;
  }
}

export function queryString(query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function api(method, path, options) {
  const opts = options || {};
  const headers = { accept: 'application/json' };
  let body;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (method !== 'GET' && method !== 'HEAD' && state.csrf) headers['x-csrf-token'] = state.csrf;
  let resp;
  try {
    resp = await fetch(path + queryString(opts.query), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, null, `The admin API cannot be reached (${e.message}). Is ccp-admin running?`);
  }
  const text = await resp.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = null;
    }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, json, `${method} ${path} failed with HTTP ${resp.status}`);
    if (resp.status === 401 && !opts.noAuthRedirect) unauthorized(err.message);
    throw err;
  }
  return json;
}

export const get = (path, query) => api('GET', path, { query });
export const send = (method, path, body) => api(method, path, { body });

/** GET /v1/usage in the chosen time zone; a zone the server does not know falls back to its default. */
export async function usage(query) {
  const q = Object.assign({ tz: state.tz }, query);
  try {
    return await get('/v1/usage', q);
  } catch (e) {
    if (e instanceof ApiError && e.field === 'tz' && q.tz) {
      const asked = q.tz;
      delete q.tz;
      const report = await get('/v1/usage', q);
      report.note = `The server does not know the time zone ${asked}; times are in ${report.tz}.`;
      return report;
    }
    throw e;
  }
}

export async function usersById() {
  const page = await get('/v1/users', { limit: 500 });
  return new Map(page.items.map((u) => [u.user_id, u]));
}
