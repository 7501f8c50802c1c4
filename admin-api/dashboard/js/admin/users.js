// The users page: search, filter, page through and create users.

import { get, send } from './api.js';
import { field, formDialog } from './dialogs.js';
import { ROUTING, ROUTING_SHORT } from './labels.js';
import { timeEl } from './time.js';
import { load, PAGE, pageHead, replaceQuery, statusBadge, toast } from './ui.js';
import { h } from '../shared/dom.js';
import { fmtInt, fmtUsd } from '../shared/format.js';
import { table } from '../shared/widgets.js';

export function viewUsers(ctx) {
  const p = ctx.params;
  const filters = { search: p.get('search') || '', status: p.get('status') || '', offset: Number(p.get('offset')) || 0 };
  const list = h('div');
  const search = h('input', { type: 'search', id: 'user-search', name: 'search', value: filters.search, placeholder: 'Name, email or description' });
  const status = h('select', { id: 'user-status', name: 'status', value: filters.status }, [
    h('option', { value: '', text: 'Any status' }),
    h('option', { value: 'active', text: 'Active' }),
    h('option', { value: 'inactive', text: 'Inactive' }),
  ]);
  status.value = filters.status;
  const newUser = h('button', { type: 'button', id: 'new-user', 'data-needs': 'operator', text: 'New user', onclick: () => createUser() });
  ctx.main.append(
    ...pageHead('Users', [newUser]),
    h(
      'div',
      { class: 'panel' },
      h(
        'form',
        { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
        h('div', { class: 'field' }, h('label', { for: 'user-search', text: 'Search' }), search),
        h('div', { class: 'field' }, h('label', { for: 'user-status', text: 'Status' }), status)
      )
    ),
    h('div', { class: 'panel' }, list)
  );
  const refresh = () => {
    replaceQuery('/users', { search: filters.search, status: filters.status, offset: filters.offset || '' });
    return load(list, ctx, async () => {
      const page = await get('/v1/users', { search: filters.search, status: filters.status, limit: PAGE, offset: filters.offset });
      return usersTable(page, filters, refresh);
    });
  };
  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      filters.search = search.value;
      filters.offset = 0;
      refresh();
    }, 250);
  });
  status.addEventListener('change', () => {
    filters.status = status.value;
    filters.offset = 0;
    refresh();
  });
  return refresh();
}

function usersTable(page, filters, refresh) {
  const filtered = filters.search || filters.status;
  const body = table({
    id: 'users-table',
    caption: `${fmtInt(page.total)} user${page.total === 1 ? '' : 's'}${filtered ? ' matching' : ''}`,
    empty: filtered ? 'No user matches these filters.' : 'No users yet: create the first one with “New user”.',
    columns: [
      { label: 'Name', cell: (u) => h('a', { href: `#/users/${u.user_id}`, text: u.name }) },
      { label: 'Email', cell: (u) => u.email || '–' },
      { label: 'Status', cell: (u) => statusBadge(u.status) },
      { label: 'Routing', cell: (u) => ROUTING_SHORT[u.routing] || u.routing },
      { label: 'Monthly budget', num: true, cell: (u) => (u.monthly_limit_usd === null ? 'unlimited' : fmtUsd(u.monthly_limit_usd)) },
      { label: 'Active keys', num: true, cell: (u) => fmtInt(u.active_keys) },
      { label: 'Created', cell: (u) => timeEl(u.created_at) },
    ],
    rows: page.items,
  });
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  const pager = h(
    'div',
    { class: 'pager' },
    h('span', { class: 'muted small', text: `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(page.total)}` }),
    h('button', {
      type: 'button',
      class: 'subtle small',
      text: 'Previous',
      disabled: page.offset === 0,
      onclick: () => {
        filters.offset = Math.max(0, page.offset - PAGE);
        refresh();
      },
    }),
    h('button', {
      type: 'button',
      class: 'subtle small',
      text: 'Next',
      disabled: to >= page.total,
      onclick: () => {
        filters.offset = page.offset + PAGE;
        refresh();
      },
    })
  );
  return [body, page.total > PAGE ? pager : null];
}

export const routingOptions = () => Object.entries(ROUTING);

async function createUser() {
  const user = await formDialog({
    title: 'New user',
    id: 'new-user-dialog',
    submitLabel: 'Create user',
    fields: [
      field({ label: 'Name', name: 'name', id: 'user-name', required: true, attrs: { maxlength: 64, autocomplete: 'off' } }),
      field({ label: 'Email', name: 'email', id: 'user-email', type: 'email', attrs: { autocomplete: 'off' } }),
      field({ label: 'Description', name: 'description', id: 'user-description', type: 'textarea', attrs: { maxlength: 500 } }),
      field({
        label: 'Monthly budget (USD)',
        name: 'monthly_limit_usd',
        id: 'user-budget',
        hint: 'Empty: unlimited. E.g. 200 or 149.50.',
        attrs: { inputmode: 'decimal', pattern: '\\d{1,7}(\\.\\d{1,6})?' },
      }),
      field({ label: 'Routing', name: 'routing', id: 'user-routing', options: routingOptions(), value: 'plan_first' }),
    ],
    onSubmit: (form) => {
      const v = (n) => form.elements[n].value.trim();
      return send('POST', '/v1/users', {
        name: v('name'),
        email: v('email') || undefined,
        description: v('description') || undefined,
        monthly_limit_usd: v('monthly_limit_usd') || undefined,
        routing: v('routing'),
      });
    },
  });
  if (user) {
    toast(`User ${user.name} created.`);
    location.hash = `#/users/${user.user_id}`;
  }
}
