// ClaudeCodeProxy dashboard: one page over the admin REST API. Native ES modules, no build step,
// no libraries. This entry point starts the page; each page of the dashboard is a module of
// js/admin/ (the router, js/admin/router.js, lists them), and the helpers /me uses too are in
// js/shared/. The session is the HttpOnly `ccp_session` cookie set by POST /v1/auth/login; the
// CSRF token from that answer is kept in sessionStorage (this tab only) and sent as
// `x-csrf-token` on every change. Nothing secret is ever kept or shown, except a newly issued
// access key inside its one-time dialog (removed from the page when the dialog closes).

import { ApiError, api } from './js/admin/api.js';
import { timeline } from './js/admin/charts.js';
import { toCsv } from './js/admin/csv.js';
import { render } from './js/admin/router.js';
import { clearSession, logout, showLogin, startApp } from './js/admin/session.js';
import { CSRF_KEY, state } from './js/admin/state.js';
import { errorBox } from './js/admin/ui.js';
import { zonedToUtc } from './js/admin/usage.js';
import { $, clear } from './js/shared/dom.js';

async function boot() {
  $('#logout').addEventListener('click', logout);
  window.addEventListener('hashchange', () => {
    if (state.admin) render();
  });
  // A password login kept the CSRF token in this tab; a single sign-on comes back here (`?sso`)
  // with only the cookie, so the token is read from /v1/auth/me (same origin only).
  const fromSso = new URLSearchParams(location.search).has('sso');
  if (fromSso) history.replaceState(null, '', location.pathname + location.hash);
  if (!state.csrf && !fromSso) {
    showLogin();
    return;
  }
  try {
    const me = await api('GET', '/v1/auth/me', { noAuthRedirect: true });
    if (me.method !== 'cookie') throw new ApiError(401, null, 'not a cookie session');
    if (me.csrf_token) {
      state.csrf = me.csrf_token;
      sessionStorage.setItem(CSRF_KEY, state.csrf);
    }
    state.admin = { username: me.username, admin_id: me.admin_id, role: me.role, team_id: me.team_id || null };
    startApp();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      clearSession();
      showLogin();
    } else {
      clear($('#main')).append(errorBox(e, () => location.reload()));
    }
  }
}

// Exposed for tests and the curious: pure helpers only, nothing holding data.
window.ccpDashboard = Object.freeze({ toCsv, timeline, zonedToUtc });

boot();
