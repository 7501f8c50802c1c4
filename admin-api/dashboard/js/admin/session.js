// Logging in and out. The session is the HttpOnly `ccp_session` cookie set by POST /v1/auth/login;
// only the CSRF token of that answer is kept (in sessionStorage, this tab only).

import { api, onUnauthorized } from './api.js';
import { closeAllDialogs } from './dialogs.js';
import { render } from './router.js';
import { CSRF_KEY, state, stopTimers } from './state.js';
import { errorBox } from './ui.js';
import { $, clear, h } from '../shared/dom.js';

export function clearSession() {
  state.csrf = null;
  state.admin = null;
  state.generation++;
  sessionStorage.removeItem(CSRF_KEY);
  stopTimers();
}

function sessionEnded(message) {
  if (!state.admin) return;
  clearSession();
  closeAllDialogs();
  showLogin(`${message} Log in again.`);
}

onUnauthorized(sessionEnded);

export function showLogin(message) {
  $('#topbar').hidden = true;
  document.title = 'Log in · ClaudeCodeProxy';
  const main = clear($('#main'));
  const errorArea = h('div', { 'aria-live': 'assertive' });
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', id: 'login-submit', text: 'Log in' });
  const form = h(
    'form',
    { id: 'login-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'login-username', text: 'Username' }), username),
    h('div', { class: 'field' }, h('label', { for: 'login-password', text: 'Password' }), password),
    errorArea,
    submit
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(errorArea);
    if (!username.value || !password.value) {
      errorArea.append(errorBox(new Error('Enter the username and the password.')));
      (username.value ? password : username).focus();
      return;
    }
    submit.disabled = true;
    const body = { username: username.value.trim(), password: password.value };
    password.value = '';
    try {
      const session = await api('POST', '/v1/auth/login', { body, noAuthRedirect: true });
      body.password = '';
      // Only the CSRF token is kept; the session itself lives in the HttpOnly cookie.
      state.csrf = session.csrf_token;
      sessionStorage.setItem(CSRF_KEY, state.csrf);
      state.admin = { username: session.admin.username, admin_id: session.admin.admin_id, role: session.admin.role, team_id: session.admin.team_id || null };
      startApp();
    } catch (e) {
      body.password = '';
      errorArea.append(errorBox(e));
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  // Single sign-on, when configured: a plain link (the server redirects to the provider).
  const sso = h('p', { class: 'sso', hidden: true },
    h('a', { id: 'login-sso', class: 'button', href: '/v1/auth/sso/start?return_to=%2F%3Fsso', text: 'Sign in with single sign-on' }));
  main.append(
    h(
      'section',
      { class: 'login panel', 'aria-labelledby': 'login-title' },
      h('h1', { id: 'login-title', tabindex: '-1' }, h('img', { src: '/dashboard/icon.svg', alt: '', width: 28, height: 28 }), 'ClaudeCodeProxy'),
      h('p', { class: 'muted', text: 'Log in to manage users, access keys, budgets and routing.' }),
      message ? h('p', { class: 'note', role: 'alert', text: message }) : null,
      sso,
      form
    )
  );
  username.focus();
  api('GET', '/v1/auth/methods', { noAuthRedirect: true }).then((methods) => {
    sso.hidden = !methods.sso;
    form.hidden = !methods.password;
    if (!methods.password) $('#login-sso').focus();
  }, () => {});
}

export function startApp() {
  $('#topbar').hidden = false;
  // What the role cannot do is hidden (app.css: [data-needs]); the API refuses it anyway.
  document.body.dataset.role = state.admin.role || 'viewer';
  // A team lead (scoped to one team) sees only their team's page: the navigation is hidden
  // (app.css: body[data-lead]) and the router opens that page whatever the address.
  if (state.admin.team_id) document.body.dataset.lead = state.admin.team_id;
  else delete document.body.dataset.lead;
  $('#whoami').textContent = `Signed in as ${state.admin.username} (${state.admin.team_id ? 'team lead' : state.admin.role || 'viewer'})`;
  state.lastPath = null;
  render();
}

export async function logout() {
  try {
    await api('POST', '/v1/auth/logout', { noAuthRedirect: true });
  } catch (_) {
    // The session is forgotten here either way.
  }
  clearSession();
  history.replaceState(null, '', '#/');
  showLogin('You are logged out.');
}
