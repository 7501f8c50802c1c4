// The dashboard's page pieces: loading and error states, toasts, page heads, panels, badges of
// users and circuits, links to users, and the address of the current view.

import { queryString } from './api.js';
import { $, append, clear, h, nextId } from '../shared/dom.js';
import { fmtInt } from '../shared/format.js';
import { badge } from '../shared/widgets.js';

const loadingEl = (text) => h('p', { class: 'loading', text: text || 'Loading…' });

export function errorBox(err, retry) {
  return h(
    'div',
    { class: 'error-box', role: 'alert' },
    h('strong', { text: err && err.status ? `Error ${err.status}: ` : 'Error: ' }),
    (err && err.message) || String(err),
    err && err.requestId ? h('span', { class: 'request-id', text: `Request id ${err.requestId}` }) : null,
    retry ? h('button', { type: 'button', class: 'subtle small', onclick: retry, text: 'Try again' }) : null
  );
}

/** Fills `el` with what `build` returns, showing a loading state (unless `quiet`) and errors with a retry. */
export async function load(el, ctx, build, quiet) {
  if (!quiet || !el.firstChild) clear(el).append(loadingEl());
  el.setAttribute('aria-busy', 'true');
  try {
    const content = await build();
    if (ctx && !ctx.alive()) return;
    clear(el);
    append(el, [content]);
  } catch (e) {
    if (ctx && !ctx.alive()) return;
    clear(el).append(errorBox(e, () => load(el, ctx, build)));
  } finally {
    el.removeAttribute('aria-busy');
  }
}

let toastTimer = null;
export function toast(message, bad) {
  const el = $('#toast');
  el.className = bad ? 'toast bad' : 'toast';
  el.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.textContent = '';
  }, 6000);
}

export const statusBadge = (s) => badge(s, s === 'active' ? 'ok' : 'bad');

export function circuitBadge(c) {
  if (!c) return badge('unknown');
  if (c.state === 'open') return badge('open', 'bad');
  if (c.state === 'half_open') return badge('half-open', 'warn');
  return badge('closed', 'ok');
}

/** "N unpriced" under a cost whose total leaves requests out (their cost is unknown). */
export function unpricedNote(t) {
  return t.unpriced_requests ? `+ ${fmtInt(t.unpriced_requests)} unpriced requests (cost unknown)` : null;
}

export function pageHead(title, actions, crumbs) {
  const parts = [
    crumbs ? h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, crumbs) : null,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1', text: title }),
      actions ? h('div', { class: 'actions' }, actions) : null
    ),
  ];
  return parts.filter(Boolean);
}

export function panel(title, body, actions, id) {
  const headingId = nextId('h');
  return h(
    'section',
    { class: 'panel', 'aria-labelledby': headingId, id },
    h('div', { class: 'section-head' }, h('h2', { id: headingId, text: title }), actions ? h('div', { class: 'actions' }, actions) : null),
    body
  );
}

export function userLink(id, users) {
  if (!id) return h('span', { class: 'muted', text: '(unrecognised key)' });
  const u = users && users.get(id);
  return h('a', { href: `#/users/${id}`, text: u ? u.name : id });
}

/** Puts view state into the address (for reload and sharing) without re-rendering. */
export function replaceQuery(path, query) {
  history.replaceState(null, '', `#${path}${queryString(query)}`);
}

/** Rows per page of a paged list (users, audit log). */
export const PAGE = 50;
