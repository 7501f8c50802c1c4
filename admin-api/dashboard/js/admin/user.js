// One user's page: profile and routing, budget, access keys, usage charts and recent changes.

import { get, send, usage } from './api.js';
import { auditTable } from './audit.js';
import { barChart, perBucket, tokenSeries } from './charts.js';
import { field, formDialog } from './dialogs.js';
import { keysTable, showIssuedKey } from './keys.js';
import { ROUTING_SHORT } from './labels.js';
import { fmtTime, timeEl } from './time.js';
import { errorBox, load, pageHead, panel, statusBadge, toast } from './ui.js';
import { routingOptions } from './users.js';
import { $, clear, h } from '../shared/dom.js';
import { fmtPct, fmtTokens, fmtUsd, fmtUsdShort } from '../shared/format.js';
import { badge, emptyEl } from '../shared/widgets.js';

export function viewUser(ctx) {
  const id = ctx.arg;
  const actions = h('div', { class: 'actions' });
  const heading = pageHead('User', null, [h('a', { href: '#/users', text: 'Users' }), ' / ', h('span', { id: 'crumb-user', text: id })]);
  // heading: [breadcrumb, page head]
  heading[1].append(actions);
  const badgeSlot = h('span');
  heading[1].insertBefore(badgeSlot, actions);
  const profile = h('div');
  const budget = h('div');
  const keys = h('div');
  const charts = h('div');
  const audit = h('div');
  ctx.main.append(
    ...heading,
    h('div', { class: 'grid cols-2' }, panel('Profile and routing', profile, null, 'user-profile'), panel('Budget this month', budget, null, 'user-budget-panel')),
    panel('Access keys', keys, null, 'user-keys'),
    panel('Usage, last 30 days', charts, h('a', { href: `#/usage?preset=last_30d&bucket=day&user_id=${id}`, class: 'small', text: 'Open in Usage' })),
    panel('Recent changes', audit, h('a', { href: `#/audit?target=${id}`, class: 'small', text: 'Full audit log' }))
  );

  const reload = async () => {
    let detail;
    await load(profile, ctx, async () => {
      detail = await get(`/v1/users/${id}`);
      return userProfile(detail, reload);
    });
    if (!detail || !ctx.alive()) return;
    $('h1', ctx.main).textContent = detail.name;
    $('#crumb-user').textContent = detail.name;
    document.title = `${detail.name} · ClaudeCodeProxy`;
    clear(badgeSlot).append(statusBadge(detail.status));
    clear(actions).append(...userActions(detail, reload));
    await Promise.all([
      load(budget, ctx, async () => budgetPanel(detail, await get(`/v1/users/${id}/budget`), reload)),
      load(keys, ctx, async () => keysTable(detail, reload)),
      load(charts, ctx, async () => {
        const r = await usage({ preset: 'last_30d', bucket: 'day', user_id: id });
        const p = perBucket(r);
        return h(
          'div',
          { class: 'grid cols-2' },
          barChart({ title: 'Cost per day', labels: p.labels, series: [{ name: 'Cost', values: p.sums.map((s) => s.cost) }], format: fmtUsdShort, id: 'chart-user-cost', empty: 'No usage in the last 30 days.' }),
          barChart({ title: 'Tokens per day', labels: p.labels, series: tokenSeries(p.sums), format: fmtTokens, id: 'chart-user-tokens', empty: 'No tokens in the last 30 days.' })
        );
      }),
      load(audit, ctx, async () => {
        const page = await get('/v1/audit', { target: id, limit: 10 });
        if (!page.items.length) return emptyEl('Nothing recorded yet (changes reach the audit log within a few seconds).');
        return auditTable(page.items, null, true);
      }),
    ]);
  };
  return reload();
}

function userActions(u, reload) {
  const active = u.status === 'active';
  return [
    h('button', {
      type: 'button',
      id: 'issue-key',
      'data-needs': 'operator',
      text: 'Issue key',
      disabled: !active,
      title: active ? null : 'Reactivate the user first',
      onclick: async () => {
        const issued = await formDialog({
          title: `Issue an access key to ${u.name}`,
          id: 'issue-key-dialog',
          submitLabel: 'Issue key',
          fields: [
            field({ label: 'Label', name: 'name', id: 'key-name', hint: 'E.g. laptop. Optional.', attrs: { maxlength: 64, autocomplete: 'off' } }),
            field({ label: 'Bedrock region', name: 'bedrock_region', id: 'key-region', hint: 'Empty: the proxy’s default region.', attrs: { autocomplete: 'off', placeholder: 'us-east-1' } }),
            field({ label: 'Bedrock default model', name: 'bedrock_default_model', id: 'key-model', hint: 'Used when the requested model maps to nothing. Optional.', attrs: { autocomplete: 'off' } }),
          ],
          onSubmit: (form) => {
            const v = (n) => form.elements[n].value.trim() || undefined;
            return send('POST', `/v1/users/${u.user_id}/keys`, { name: v('name'), bedrock_region: v('bedrock_region'), bedrock_default_model: v('bedrock_default_model') });
          },
        });
        if (issued) {
          await showIssuedKey(issued, 'Access key issued');
          reload();
        }
      },
    }),
    active
      ? h('button', {
          type: 'button',
          id: 'deactivate-user',
          'data-needs': 'operator',
          class: 'danger',
          text: 'Deactivate',
          onclick: async () => {
            const done = await formDialog({
              title: `Deactivate ${u.name}?`,
              intro: 'Every key of this user is refused by the proxy within a second, until the user is reactivated.',
              fields: [field({ label: 'Reason (for the audit log)', name: 'reason', type: 'textarea', attrs: { maxlength: 500 } })],
              submitLabel: 'Deactivate',
              danger: true,
              onSubmit: (form) => send('POST', `/v1/users/${u.user_id}/deactivate`, { reason: form.elements.reason.value.trim() || undefined }),
            });
            if (done) {
              toast(`${u.name} is deactivated.`);
              reload();
            }
          },
        })
      : h('button', {
          type: 'button',
          id: 'reactivate-user',
          'data-needs': 'operator',
          text: 'Reactivate',
          onclick: async () => {
            const done = await formDialog({
              title: `Reactivate ${u.name}?`,
              intro: 'Their keys that are not revoked work again.',
              submitLabel: 'Reactivate',
              onSubmit: () => send('POST', `/v1/users/${u.user_id}/reactivate`),
            });
            if (done) {
              toast(`${u.name} is active again.`);
              reload();
            }
          },
        }),
  ];
}

function userProfile(u, reload) {
  const routing = h('select', { id: 'routing-select', name: 'strategy' }, routingOptions().map(([v, t]) => h('option', { value: v, text: t })));
  routing.value = u.routing;
  const save = h('button', { type: 'submit', class: 'subtle', text: 'Save routing' });
  const errorArea = h('div');
  const form = h(
    'form',
    { class: 'inline', id: 'routing-form', 'data-needs': 'operator' },
    h('div', { class: 'field' }, h('label', { for: 'routing-select', text: 'Routing strategy' }), routing),
    save
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(errorArea);
    save.disabled = true;
    try {
      await send('PUT', `/v1/users/${u.user_id}/routing`, { strategy: routing.value });
      toast(`Routing of ${u.name}: ${ROUTING_SHORT[routing.value]}.`);
      reload();
    } catch (e) {
      errorArea.append(errorBox(e));
    } finally {
      save.disabled = false;
    }
  });
  return [
    h(
      'dl',
      { class: 'kv' },
      h('dt', { text: 'User id' }),
      h('dd', null, h('code', { text: u.user_id })),
      h('dt', { text: 'Email' }),
      h('dd', { text: u.email || '–' }),
      h('dt', { text: 'Description' }),
      h('dd', { text: u.description || '–' }),
      h('dt', { text: 'Team' }),
      h('dd', { id: 'user-team' }, u.team_id ? h('a', { href: `#/teams/${u.team_id}`, text: u.team }) : '–'),
      h('dt', { text: 'Routed as' }),
      h('dd', { id: 'user-effective-routing', text: u.effective_routing === u.routing ? ROUTING_SHORT[u.effective_routing] : `${ROUTING_SHORT[u.effective_routing]} (the team’s default)` }),
      h('dt', { text: 'Created' }),
      h('dd', null, timeEl(u.created_at)),
      h('dt', { text: 'Last changed' }),
      h('dd', null, timeEl(u.updated_at))
    ),
    h('hr', { class: 'sep' }),
    form,
    errorArea,
  ];
}

function budgetPanel(u, b, reload) {
  const limit = b.limit_usd === null ? null : Number(b.limit_usd);
  const spent = Number(b.spent_usd);
  const parts = [];
  if (limit === null) {
    parts.push(h('p', null, h('strong', { id: 'budget-spent', text: fmtUsd(spent) }), ' spent in ', b.month, ' · no limit'));
  } else {
    const ratio = limit > 0 ? Math.min(spent / limit, 1) : 1;
    const fill = h('span');
    fill.style.width = `${ratio * 100}%`;
    parts.push(
      h('p', null, h('strong', { id: 'budget-spent', text: fmtUsd(spent) }), ` of ${fmtUsd(limit)} spent in ${b.month}`, b.exhausted ? [' ', badge('exhausted', 'bad')] : null),
      h(
        'div',
        {
          class: `bar ${b.exhausted ? 'bad' : ratio >= 0.8 ? 'warn' : ''}`,
          role: 'progressbar',
          'aria-label': 'Budget used',
          'aria-valuemin': 0,
          'aria-valuemax': 100,
          'aria-valuenow': Math.round(ratio * 100),
          'aria-valuetext': `${fmtPct(ratio)} of the monthly budget`,
        },
        fill
      ),
      h('p', { class: 'small muted', text: `${fmtUsd(b.remaining_usd)} remaining · ${fmtPct(ratio)} used` })
    );
  }
  parts.push(h('p', { class: 'small muted', text: `Resets ${fmtTime(b.reset_at)} (${b.time_zone}).` }));
  const input = h('input', {
    id: 'budget-input',
    name: 'monthly_limit_usd',
    inputmode: 'decimal',
    pattern: '\\d{1,7}(\\.\\d{1,6})?',
    value: u.monthly_limit_usd === null ? '' : u.monthly_limit_usd,
    placeholder: 'unlimited',
    'aria-describedby': 'budget-hint',
  });
  const errorArea = h('div');
  const save = async (value) => {
    clear(errorArea);
    input.removeAttribute('aria-invalid');
    try {
      await send('PUT', `/v1/users/${u.user_id}/budget`, { monthly_limit_usd: value });
      toast(value === null ? `${u.name} has no budget limit.` : `Budget of ${u.name}: ${fmtUsd(value)} a month.`);
      reload();
    } catch (e) {
      input.setAttribute('aria-invalid', 'true');
      errorArea.append(errorBox(e));
    }
  };
  const form = h(
    'form',
    { class: 'inline', id: 'budget-form', 'data-needs': 'operator' },
    h('div', { class: 'field' }, h('label', { for: 'budget-input', text: 'Monthly budget (USD)' }), input, h('span', { class: 'hint', id: 'budget-hint', text: 'Empty or “Unlimited”: no limit.' })),
    h('button', { type: 'submit', class: 'subtle', text: 'Set budget' }),
    h('button', { type: 'button', class: 'subtle', text: 'Unlimited', onclick: () => save(null) })
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    save(input.value.trim() === '' ? null : input.value.trim());
  });
  return [parts, form, errorArea];
}
