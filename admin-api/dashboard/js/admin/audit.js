// The audit log page, and the table of audit records (also on a user's page).

import { get, usersById } from './api.js';
import { field } from './dialogs.js';
import { timeEl } from './time.js';
import { load, PAGE, pageHead, replaceQuery, userLink } from './ui.js';
import { h } from '../shared/dom.js';
import { fmtInt } from '../shared/format.js';
import { table } from '../shared/widgets.js';

const EVENT_TYPES = [
  'user_created', 'user_updated', 'user_deactivated', 'user_reactivated', 'budget_set', 'routing_strategy_set',
  'access_key_issued', 'access_key_revoked', 'access_key_rotated', 'bedrock_settings_changed',
  'bedrock_api_key_registered', 'bedrock_api_key_rotated', 'bedrock_api_key_removed', 'pricing_set',
  'admin_created', 'admin_login_succeeded', 'admin_login_failed', 'api_token_issued', 'api_token_revoked',
  'admin_team_scope_set',
];

export function auditTable(items, users, compact) {
  const target = (e) => {
    if (e.target_kind === 'user' && e.target_id) return userLink(e.target_id, users);
    if (e.target_kind === 'access_key') {
      return [h('code', { text: e.key_id || e.target_id || '' }), e.user_id ? [' of ', userLink(e.user_id, users)] : null];
    }
    return [h('span', { class: 'muted', text: `${e.target_kind} ` }), e.target_id || ''];
  };
  return table({
    id: compact ? 'user-audit-table' : 'audit-table',
    empty: 'No audit records match.',
    columns: [
      { label: 'When', cell: (e) => timeEl(e.occurred_at) },
      { label: 'Event', cell: (e) => h('code', { class: 'event-type', text: e.event_type }) },
      { label: 'Actor', cell: (e) => e.actor_name || e.actor_id || e.actor_kind },
      compact ? null : { label: 'Target', cell: target },
      compact ? null : { label: 'Source', cell: (e) => e.source || '–' },
      { label: 'Request id', cell: (e) => (e.request_id ? h('code', { class: 'small', text: e.request_id }) : '–') },
      {
        label: 'Details',
        cell: (e) => h('details', null, h('summary', { text: 'Show' }), h('pre', { class: 'json', text: JSON.stringify(e.details, null, 2) })),
      },
    ].filter(Boolean),
    rows: items,
  });
}

/** A datetime-local value in the browser's zone as RFC 3339 UTC. */
const localToIso = (v) => (v ? new Date(v).toISOString().replace('.000Z', 'Z') : undefined);

export function viewAudit(ctx) {
  const p = ctx.params;
  const q = { actor: p.get('actor') || '', target: p.get('target') || '', type: p.get('type') || '', from: p.get('from') || '', to: p.get('to') || '', offset: Number(p.get('offset')) || 0 };
  const input = (name, label, attrs) => field({ label, name, id: `audit-${name}`, value: q[name], attrs: Object.assign({ autocomplete: 'off' }, attrs || {}) });
  const results = h('div', { id: 'audit-results' });
  const form = h(
    'form',
    { class: 'filters', id: 'audit-form' },
    input('actor', 'Actor (admin username or id)'),
    input('target', 'Target (usr_…, key_…, adm_… or login name)'),
    input('type', 'Event type', { list: 'event-types' }),
    h('datalist', { id: 'event-types' }, EVENT_TYPES.map((t) => h('option', { value: t }))),
    field({ label: 'From (your time)', name: 'from', id: 'audit-from', type: 'datetime-local', value: q.from }),
    field({ label: 'To', name: 'to', id: 'audit-to', type: 'datetime-local', value: q.to }),
    h('button', { type: 'submit', id: 'audit-apply', text: 'Filter' })
  );
  ctx.main.append(...pageHead('Audit log'), h('div', { class: 'panel' }, form), h('div', { class: 'panel' }, results));
  let users = new Map();
  const show = () => {
    replaceQuery('/audit', Object.assign({}, q, { offset: q.offset || '' }));
    return load(results, ctx, async () => {
      const page = await get('/v1/audit', {
        actor: q.actor || undefined,
        target: q.target || undefined,
        type: q.type || undefined,
        from: localToIso(q.from),
        to: localToIso(q.to),
        limit: PAGE,
        offset: q.offset,
      });
      const to = page.offset + page.items.length;
      return [
        h('p', { class: 'muted small', text: `${fmtInt(page.total)} record${page.total === 1 ? '' : 's'}, newest first` }),
        auditTable(page.items, users, false),
        page.total > PAGE
          ? h(
              'div',
              { class: 'pager' },
              h('span', { class: 'muted small', text: `${fmtInt(page.offset + 1)}–${fmtInt(to)} of ${fmtInt(page.total)}` }),
              h('button', { type: 'button', class: 'subtle small', text: 'Newer', disabled: page.offset === 0, onclick: () => { q.offset = Math.max(0, page.offset - PAGE); show(); } }),
              h('button', { type: 'button', class: 'subtle small', text: 'Older', disabled: to >= page.total, onclick: () => { q.offset = to; show(); } })
            )
          : null,
      ];
    });
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    for (const k of ['actor', 'target', 'type', 'from', 'to']) q[k] = form.elements[k].value.trim();
    q.offset = 0;
    show();
  });
  return (async () => {
    try {
      users = await usersById();
    } catch (_) {
      users = new Map();
    }
    if (ctx.alive()) await show();
  })();
}
