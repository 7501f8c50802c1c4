// The teams pages: the list (budget, routing default, members) and one team (members, budget,
// routing default, this month's usage by member and by model).

import { get, send, usage } from './api.js';
import { field, formDialog } from './dialogs.js';
import { ROUTING, ROUTING_SHORT } from './labels.js';
import { state } from './state.js';
import { load, pageHead, panel, statusBadge, toast, unpricedNote } from './ui.js';
import { h } from '../shared/dom.js';
import { fmtInt, fmtUsd } from '../shared/format.js';
import { table } from '../shared/widgets.js';

const budgetText = (limit) => (limit === null ? 'unlimited' : fmtUsd(limit));
const routingText = (r) => (r ? ROUTING_SHORT[r] || r : 'none');
const routingOptions = [['', 'No default (members’ own)']].concat(Object.entries(ROUTING));

function teamFields(team) {
  return [
    field({ label: 'Name', name: 'name', id: 'team-name', required: true, value: team ? team.name : '', hint: 'Unique among teams, 1–64 characters.', attrs: { maxlength: 64, autocomplete: 'off' } }),
    field({ label: 'Description', name: 'description', id: 'team-description', value: team ? team.description || '' : '' }),
  ];
}

async function createTeam() {
  const team = await formDialog({
    title: 'New team',
    id: 'team-dialog',
    submitLabel: 'Create team',
    fields: teamFields(null).concat([
      field({ label: 'Monthly budget (USD)', name: 'monthly_limit_usd', id: 'team-budget', value: '', hint: 'The members’ spend together; each member’s own budget applies too. Empty: unlimited.', attrs: { inputmode: 'decimal', autocomplete: 'off' } }),
      field({ label: 'Routing default', name: 'routing', id: 'team-routing', options: routingOptions, value: '', hint: 'For members without a routing strategy of their own.' }),
    ]),
    onSubmit: (form) => {
      const v = (n) => form.elements[n].value.trim();
      return send('POST', '/v1/teams', {
        name: v('name'),
        description: v('description') || null,
        monthly_limit_usd: v('monthly_limit_usd') || null,
        routing: v('routing') || null,
      });
    },
  });
  if (team) {
    toast(`Team ${team.name} created.`);
    location.hash = `#/teams/${team.team_id}`;
  }
}

/** Finance statement downloads (CSV, JSON) of a month, of one team (`teamId`) or of everyone. */
export function statementPanel(teamId) {
  // Empty: the server's default, the last complete month in the budget time zone.
  const month = h('input', { id: 'statement-month', name: 'month', type: 'month', value: '' });
  const link = (format, text) => h('a', { class: 'button subtle', id: `statement-${format}`, text, download: '' });
  const csv = link('csv', 'Download CSV');
  const json = link('json', 'Download JSON');
  const sync = () => {
    for (const [a, format] of [[csv, 'csv'], [json, 'json']]) {
      const q = new URLSearchParams({ format });
      if (month.value) q.set('month', month.value);
      if (teamId) q.set('team_id', teamId);
      a.href = `/v1/statements?${q}`;
    }
  };
  month.addEventListener('change', sync);
  sync();
  return panel('Finance statement', [
    h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'statement-month', text: 'Month (empty: the last complete one)' }), month), csv, json),
    h('p', { class: 'small muted', text: 'Cost per team, user and provider for the month in the budget time zone. Bedrock lines are the organisation’s spend; Anthropic lines the list-price value of the developers’ own plans. Lines with estimated output tokens or models without a price say so (cost_status); totals match the usage page.' }),
  ]);
}

export function viewTeams(ctx) {
  const list = h('div');
  ctx.main.append(
    ...pageHead('Teams', [h('button', { type: 'button', id: 'new-team', 'data-needs': 'operator', text: 'New team', onclick: () => createTeam() })]),
    h('p', { class: 'muted', text: 'A user is in at most one team. A team’s monthly budget applies to its members’ requests together, besides each member’s own budget: the stricter refuses first. Spend stays with the team it was incurred in when a user moves.' }),
    panel('Teams', list),
    statementPanel(null)
  );
  return load(list, ctx, async () => {
    const teams = await get('/v1/teams');
    return table({
      id: 'teams-table',
      empty: 'No teams yet: create the first one with “New team”.',
      columns: [
        { label: 'Name', cell: (t) => h('a', { href: `#/teams/${t.team_id}`, text: t.name }) },
        { label: 'Monthly budget', num: true, cell: (t) => budgetText(t.monthly_limit_usd) },
        { label: 'Routing default', cell: (t) => routingText(t.routing) },
        { label: 'Members', num: true, cell: (t) => fmtInt(t.members) },
      ],
      rows: teams,
    });
  });
}

/** A usage report of the team's requests, summed by user and by model. */
function usageBy(report) {
  const byUser = new Map();
  const byModel = new Map();
  const add = (map, k, r) => {
    const t = map.get(k) || { key: k, requests: 0, cost: 0, unpriced: 0 };
    t.requests += r.requests;
    t.cost += Number(r.cost_usd);
    t.unpriced += r.unpriced_requests;
    map.set(k, t);
  };
  for (const r of report.rows) {
    add(byUser, r.user_id, r);
    add(byModel, r.model || '(none)', r);
  }
  const sorted = (m) => Array.from(m.values()).sort((a, b) => b.cost - a.cost);
  return { byUser: sorted(byUser), byModel: sorted(byModel) };
}

const usageColumns = (first) => [
  first,
  { label: 'Requests', num: true, cell: (t) => fmtInt(t.requests) },
  { label: 'Cost', num: true, cell: (t) => [fmtUsd(t.cost), t.unpriced ? h('div', { class: 'small muted', text: unpricedNote({ unpriced_requests: t.unpriced }) }) : null] },
];

export function viewTeam(ctx) {
  const id = ctx.arg;
  const body = h('div');
  // A team lead (an admin scoped to this team) reads only the team, its members and its usage:
  // no list of all users, no links to other pages.
  const lead = Boolean(state.admin && state.admin.team_id);
  const refresh = () =>
    load(body, ctx, async () => {
      const [team, users] = await Promise.all([get(`/v1/teams/${id}`), lead ? { items: [] } : get('/v1/users', { limit: 500 })]);
      const members = new Map(team.users.map((u) => [u.user_id, u]));
      const names = new Map([...users.items, ...team.users].map((u) => [u.user_id, u.name]));
      const [report, budget] = await Promise.all([
        usage({ preset: 'this_month', bucket: 'month', group_by: 'user,model', team_id: id }),
        get(`/v1/teams/${id}/budget`),
      ]);
      const { byUser, byModel } = usageBy(report);
      const others = users.items.filter((u) => !members.has(u.user_id));
      return [
        ...pageHead(team.name, [
          h('button', { type: 'button', id: 'team-edit', class: 'subtle', 'data-needs': 'operator', text: 'Edit', onclick: () => editTeam(team, refresh) }),
          h('button', { type: 'button', id: 'team-budget', 'data-needs': 'operator', text: 'Budget', onclick: () => setBudget(team, refresh) }),
          h('button', { type: 'button', id: 'team-routing', 'data-needs': 'operator', text: 'Routing default', onclick: () => setRouting(team, refresh) }),
          h('button', { type: 'button', id: 'team-delete', class: 'danger', 'data-needs': 'operator', text: 'Delete', onclick: () => deleteTeam(team) }),
        ], lead ? null : [h('a', { href: '#/teams', text: 'Teams' })]),
        h('dl', { class: 'kv', id: 'team-facts' },
          h('dt', { text: 'Monthly budget' }), h('dd', { id: 'team-budget-value', text: budgetText(team.monthly_limit_usd) }),
          h('dt', { text: `Spent in ${budget.month}` }), h('dd', { id: 'team-budget-spent', text: `${fmtUsd(budget.spent_usd)}${budget.exhausted ? ' (exhausted: members’ requests are refused)' : ''}` }),
          h('dt', { text: 'Routing default' }), h('dd', { id: 'team-routing-value', text: team.routing ? ROUTING[team.routing] : 'none (members’ own)' }),
          h('dt', { text: 'Members' }), h('dd', { text: fmtInt(team.members) }),
          team.description ? [h('dt', { text: 'Description' }), h('dd', { text: team.description })] : null),
        panel('Members', [
          table({
            id: 'team-members',
            empty: 'No members yet.',
            columns: [
              { label: 'Name', cell: (u) => (lead ? u.name : h('a', { href: `#/users/${u.user_id}`, text: u.name })) },
              { label: 'Status', cell: (u) => statusBadge(u.status) },
              { label: 'Own budget', num: true, cell: (u) => budgetText(u.monthly_limit_usd) },
              { label: 'Routing', cell: (u) => ROUTING_SHORT[u.effective_routing] || u.effective_routing },
              { label: '', cell: (u) => h('button', { type: 'button', class: 'subtle small', 'data-action': 'remove-member', 'data-user': u.user_id, 'data-needs': 'operator', text: 'Remove', onclick: () => setTeam(u.user_id, null, `${u.name} left ${team.name}.`, refresh) }) },
            ],
            rows: team.users,
          }),
          others.length
            ? h('form', { class: 'filters', id: 'add-member', 'data-needs': 'operator', onsubmit: (e) => { e.preventDefault(); const v = e.target.elements.user.value; if (v) setTeam(v, id, 'Member added.', refresh); } },
                h('div', { class: 'field' }, h('label', { for: 'add-member-user', text: 'Add a user' }),
                  h('select', { id: 'add-member-user', name: 'user' }, others.map((u) => h('option', { value: u.user_id, text: u.team ? `${u.name} (now in ${u.team})` : u.name })))),
                h('button', { type: 'submit', text: 'Add' }))
            : null,
        ]),
        panel('Usage this month by member', table({ id: 'team-usage-members', empty: 'No usage this month.', columns: usageColumns({ label: 'Member', cell: (t) => [names.get(t.key) || h('code', { text: t.key }), members.has(t.key) ? null : h('span', { class: 'small muted', text: ' (no longer in the team)' })] }), rows: byUser })),
        panel('Usage this month by model', [
          table({ id: 'team-usage-models', empty: 'No usage this month.', columns: usageColumns({ label: 'Model', cell: (t) => h('code', { text: t.key }) }), rows: byModel }),
          h('p', { class: 'small muted', text: `Requests made in this team this month (${report.tz}), by whoever was a member then: spend stays with the team it was incurred in when a user moves.` }),
        ]),
        statementPanel(id),
      ];
    });
  ctx.main.append(body);
  return refresh();
}

async function setTeam(userId, teamId, message, after) {
  try {
    await send('PUT', `/v1/users/${userId}/team`, { team_id: teamId });
    toast(message);
    after();
  } catch (e) {
    toast(e.message, true);
  }
}

async function editTeam(team, after) {
  const saved = await formDialog({
    title: `Edit ${team.name}`,
    id: 'team-dialog',
    submitLabel: 'Save',
    fields: teamFields(team),
    onSubmit: (form) => send('PATCH', `/v1/teams/${team.team_id}`, { name: form.elements.name.value.trim(), description: form.elements.description.value.trim() }),
  });
  if (saved) after();
}

async function setBudget(team, after) {
  const saved = await formDialog({
    title: `Budget of ${team.name}`,
    id: 'team-budget-dialog',
    submitLabel: 'Set budget',
    fields: [field({ label: 'Monthly budget (USD)', name: 'monthly_limit_usd', id: 'team-budget-input', value: team.monthly_limit_usd || '', hint: 'Empty: unlimited.', attrs: { inputmode: 'decimal', autocomplete: 'off' } })],
    onSubmit: (form) => send('PUT', `/v1/teams/${team.team_id}/budget`, { monthly_limit_usd: form.elements.monthly_limit_usd.value.trim() || null }),
  });
  if (saved) {
    toast(`Budget of ${saved.name}: ${budgetText(saved.monthly_limit_usd)}.`);
    after();
  }
}

async function setRouting(team, after) {
  const saved = await formDialog({
    title: `Routing default of ${team.name}`,
    id: 'team-routing-dialog',
    submitLabel: 'Set routing default',
    fields: [field({ label: 'Routing default', name: 'routing', id: 'team-routing-input', options: routingOptions, value: team.routing || '', hint: 'Members with a routing strategy of their own keep it.' })],
    onSubmit: (form) => send('PUT', `/v1/teams/${team.team_id}/routing`, { strategy: form.elements.routing.value || null }),
  });
  if (saved) after();
}

async function deleteTeam(team) {
  const done = await formDialog({
    title: `Delete ${team.name}?`,
    id: 'team-delete-dialog',
    intro: 'Only a team without members can be deleted. Its recorded spend keeps its team id.',
    submitLabel: 'Delete team',
    danger: true,
    onSubmit: async () => {
      await send('DELETE', `/v1/teams/${team.team_id}`);
      return true;
    },
  });
  if (done) {
    toast(`Team ${team.name} deleted.`);
    location.hash = '#/teams';
  }
}
