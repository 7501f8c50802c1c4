// Admins (the `admin` role only): every admin account with its role, team scope and status; one
// admin's role, team scope (a team lead: a viewer who sees only one team), password, disabling,
// open sessions and API tokens. Every change is an admin command, so
// it is in the audit log.

import { get, send } from './api.js';
import { field, formDialog } from './dialogs.js';
import { timeEl } from './time.js';
import { load, pageHead, panel, toast } from './ui.js';
import { state } from './state.js';
import { h } from '../shared/dom.js';
import { badge, emptyEl, table } from '../shared/widgets.js';

const ROLES = [
  ['viewer', 'Viewer: reads usage, audit, users, keys, circuits, models'],
  ['operator', 'Operator: also manages users, keys, Bedrock keys, budgets, routing, circuits, models'],
  ['admin', 'Admin: everything, including admins and prices'],
];

const statusOf = (a) => (a.disabled ? badge('disabled', 'bad') : badge('enabled', 'ok'));

/** The team an admin is scoped to, as a link to it (`–`: unscoped). */
const scopeOf = (a, teams) => {
  if (!a.team_id) return '–';
  const team = teams.find((t) => t.team_id === a.team_id);
  return h('a', { href: `#/teams/${a.team_id}`, text: `team lead of ${team ? team.name : a.team_id}` });
};

export function viewAdmins(ctx) {
  const list = h('div');
  const create = h('button', { type: 'button', id: 'new-admin', 'data-needs': 'admin', text: 'New admin' });
  ctx.main.append(...pageHead('Admins', [create]), list);
  const refresh = () =>
    load(list, ctx, async () => {
      const [admins, teams] = await Promise.all([get('/v1/admins'), get('/v1/teams')]);
      return table({
        id: 'admins-table',
        columns: [
          { label: 'Username', cell: (a) => h('a', { href: `#/admins/${a.admin_id}`, text: a.username }) },
          { label: 'Role', cell: (a) => a.role },
          { label: 'Team scope', cell: (a) => scopeOf(a, teams) },
          { label: 'Status', cell: statusOf },
          { label: 'Created', cell: (a) => timeEl(a.created_at) },
        ],
        rows: admins,
      });
    });
  create.addEventListener('click', async () => {
    const created = await formDialog({
      title: 'New admin',
      id: 'new-admin-dialog',
      submitLabel: 'Create admin',
      fields: [
        field({ label: 'Username', name: 'username', id: 'admin-username', required: true, attrs: { maxlength: 64, autocomplete: 'off' } }),
        field({ label: 'Password', name: 'password', id: 'admin-password', type: 'password', required: true, hint: 'At least 12 characters; tell it to them over another channel.', attrs: { autocomplete: 'new-password', minlength: 12 } }),
        field({ label: 'Role', name: 'role', id: 'admin-role', options: ROLES, value: 'viewer' }),
      ],
      onSubmit: (form) => send('POST', '/v1/admins', { username: form.elements.username.value.trim(), password: form.elements.password.value, role: form.elements.role.value }),
    });
    if (created) {
      toast(`${created.username} is a ${created.role}.`);
      refresh();
    }
  });
  return refresh();
}

export function viewAdmin(ctx) {
  const id = ctx.arg;
  const head = pageHead('Admin', null, [h('a', { href: '#/admins', text: 'Admins' }), ' / ', h('span', { text: id })]);
  const profile = h('div');
  const sessions = h('div');
  const tokens = h('div');
  ctx.main.append(...head, panel('Account', profile), panel('Open sessions', sessions, null, 'admin-sessions'), panel('API tokens', tokens, null, 'admin-tokens'));
  const act = async (title, intro, submitLabel, run, danger, fields) => {
    const done = await formDialog({ title, intro, submitLabel, danger, fields: fields || [], onSubmit: run });
    if (done !== undefined && done !== null) {
      toast(`${title}: done.`);
      refresh();
    }
  };
  const refresh = async () => {
    const [admins, teams] = await Promise.all([get('/v1/admins'), get('/v1/teams')]);
    const a = admins.find((x) => x.admin_id === id);
    if (!a) throw new Error(`There is no admin ${id}.`);
    const h1 = ctx.main.querySelector('h1');
    if (h1) h1.textContent = a.username;
    const self = state.admin && state.admin.admin_id === id;
    const role = h('select', { id: 'admin-role-select', name: 'role' }, ROLES.map(([v, t]) => h('option', { value: v, text: t, selected: v === a.role })));
    const roleForm = h('form', { class: 'inline', id: 'admin-role-form' }, h('div', { class: 'field' }, h('label', { for: 'admin-role-select', text: 'Role' }), role), h('button', { type: 'submit', class: 'subtle', text: 'Set role' }));
    roleForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await send('PUT', `/v1/admins/${id}/role`, { role: role.value });
        toast(`${a.username} is now ${role.value}.`);
        refresh();
      } catch (e) {
        toast(e.message, true);
      }
    });
    // The team scope: only a viewer can be a team lead (the API refuses the rest with 409).
    const viewer = a.role === 'viewer';
    const scope = h(
      'select',
      { id: 'admin-scope-select', name: 'team_id', disabled: !viewer && !a.team_id },
      [['', 'None: sees every team'], ...teams.map((t) => [t.team_id, `Team lead of ${t.name}`])].map(([v, t]) => h('option', { value: v, text: t, selected: v === (a.team_id || '') }))
    );
    const scopeForm = h(
      'form',
      { class: 'inline', id: 'admin-scope-form' },
      h('div', { class: 'field' }, h('label', { for: 'admin-scope-select', text: 'Team scope' }), scope),
      h('button', { type: 'submit', class: 'subtle', text: 'Set team scope', disabled: !viewer && !a.team_id }),
      viewer ? null : h('p', { class: 'small muted', text: 'Only a viewer can be scoped to a team.' })
    );
    scopeForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const saved = await send('PUT', `/v1/admins/${id}/team-scope`, { team_id: scope.value || null });
        toast(saved.team_id ? `${a.username} is now a team lead.` : `${a.username} is no longer scoped to a team.`);
        refresh();
      } catch (e) {
        toast(e.message, true);
      }
    });
    const buttons = h(
      'div',
      { class: 'actions' },
      a.disabled
        ? h('button', { type: 'button', id: 'enable-admin', text: 'Enable', onclick: () => act(`Enable ${a.username}`, 'Their API tokens work again; they log in anew.', 'Enable', () => send('POST', `/v1/admins/${id}/enable`)) })
        : h('button', {
            type: 'button',
            id: 'disable-admin',
            class: 'danger',
            text: 'Disable',
            disabled: self,
            title: self ? 'Ask another admin' : null,
            onclick: () =>
              act(`Disable ${a.username}`, 'Their password, sessions and API tokens stop working at once, on every replica.', 'Disable', (form) => send('POST', `/v1/admins/${id}/disable`, { reason: form.elements.reason.value.trim() || undefined }), true, [
                field({ label: 'Reason (for the audit log)', name: 'reason', type: 'textarea', attrs: { maxlength: 500 } }),
              ]),
          }),
      h('button', { type: 'button', id: 'sign-out-admin', class: 'subtle', text: 'Sign out everywhere', onclick: () => act(`Sign ${a.username} out everywhere`, 'Every session of theirs ends; API tokens keep working.', 'Sign out', () => send('POST', `/v1/admins/${id}/sign-out-everywhere`)) }),
      h('button', {
        type: 'button',
        id: 'reset-admin-password',
        class: 'subtle',
        text: 'Set password',
        onclick: () =>
          act(`New password for ${a.username}`, 'Their sessions end; tell them the password over another channel.', 'Set password', (form) => send('PUT', `/v1/admins/${id}/password`, { new_password: form.elements.new_password.value }), false, [
            field({ label: 'New password', name: 'new_password', id: 'admin-new-password', type: 'password', required: true, hint: 'At least 12 characters, 5 different ones, not the username.', attrs: { autocomplete: 'new-password', minlength: 12 } }),
          ]),
      })
    );
    profile.replaceChildren(h('dl', { class: 'kv', id: 'admin-profile' }, h('dt', { text: 'Admin id' }), h('dd', null, h('code', { text: a.admin_id })), h('dt', { text: 'Status' }), h('dd', null, statusOf(a)), h('dt', { text: 'Created' }), h('dd', null, timeEl(a.created_at)), h('dt', { text: 'Team scope' }), h('dd', { id: 'admin-scope-value' }, scopeOf(a, teams))), roleForm, scopeForm, buttons);
    await Promise.all([
      load(sessions, ctx, async () => {
        const list = await get(`/v1/admins/${id}/sessions`);
        if (!list.length) return emptyEl('No open sessions.');
        return table({
          id: 'admin-sessions-table',
          columns: [
            { label: 'Session', cell: (s) => h('code', { text: s.session_id }) },
            { label: 'Opened', cell: (s) => timeEl(s.issued_at) },
            { label: 'Expires', cell: (s) => timeEl(s.expires_at) },
            { label: '', cell: (s) => h('button', { type: 'button', class: 'subtle small', 'data-action': 'end-session', text: 'End', onclick: () => act('End the session', `Session ${s.session_id} of ${a.username} ends.`, 'End session', async () => { await send('POST', `/v1/admins/${id}/sessions/${s.session_id}/revoke`); return true; }) }) },
          ],
          rows: list,
        });
      }),
      load(tokens, ctx, async () => {
        const list = await get(`/v1/admins/${id}/api-tokens`);
        if (!list.length) return emptyEl('No API tokens.');
        return table({
          id: 'admin-tokens-table',
          columns: [
            { label: 'Name', cell: (t) => t.name },
            { label: 'Token', cell: (t) => h('code', { text: `${t.prefix}…` }) },
            { label: 'Role', cell: (t) => t.role || `(${a.role})` },
            { label: 'Status', cell: (t) => (t.revoked ? badge('revoked', 'bad') : badge('active', 'ok')) },
            { label: 'Issued', cell: (t) => timeEl(t.created_at) },
            { label: '', cell: (t) => (t.revoked ? null : h('button', { type: 'button', class: 'subtle small', 'data-action': 'revoke-token', text: 'Revoke', onclick: () => act('Revoke the API token', `${t.name} (${t.prefix}…) stops working at once.`, 'Revoke', () => send('POST', `/v1/admins/${id}/api-tokens/${t.token_id}/revoke`), true) })) },
          ],
          rows: list,
        });
      }),
    ]);
  };
  return refresh();
}
