// The overview page: today and this month, Plan vs Bedrock, open circuits, top users, throughput
// and the latest alerts, refreshed every 30 seconds.

import { get, usage, usersById } from './api.js';
import { addCounts, barChart, perBucket, tokenSeries, tokensOf, zeroCounts } from './charts.js';
import { keysOf, openCircuits } from './circuits.js';
import { PROVIDER_COLOR, PROVIDERS } from './labels.js';
import { state } from './state.js';
import { fmtAgo, timeEl } from './time.js';
import { load, pageHead, panel, unpricedNote, userLink } from './ui.js';
import { h } from '../shared/dom.js';
import { fmtInt, fmtPct, fmtTokens, fmtUsd } from '../shared/format.js';
import { badge, emptyEl, stat } from '../shared/widgets.js';

export function viewOverview(ctx) {
  const refresh = h('button', { type: 'button', id: 'refresh', class: 'subtle', text: 'Refresh' });
  const today = h('div');
  const month = h('div');
  const split = h('div');
  const circuits = h('div');
  const top = h('div');
  const throughput = h('div');
  const alerts = h('div');
  ctx.main.append(
    ...pageHead('Overview', [h('span', { class: 'muted small', text: `Times in ${state.tz}` }), refresh]),
    h('div', { class: 'grid cols-2' }, panel('Today', today), panel('This month', month)),
    h(
      'div',
      { class: 'grid cols-3' },
      panel('Plan vs Bedrock, this month', split),
      panel('Open circuits', circuits, h('a', { href: '#/circuits', class: 'small', text: 'All circuits' })),
      panel('Top users by cost, this month', top, h('a', { href: '#/usage?preset=this_month&bucket=day&group=user', class: 'small', text: 'Details' }))
    ),
    panel('Throughput, last 24 hours', throughput, h('a', { href: '#/usage?preset=last_24h&bucket=hour', class: 'small', text: 'Usage' })),
    panel('Recent alerts', alerts, h('a', { href: '#/audit?type=alert_raised', class: 'small', text: 'All alerts' }))
  );

  const statsOf = (report, prefix) => {
    const t = report.totals;
    return h(
      'dl',
      { class: 'stats' },
      stat('Requests', fmtInt(t.requests), t.errors ? `${fmtInt(t.errors)} errors` : 'no errors', `stat-${prefix}-requests`, t.requests),
      stat('Tokens', fmtTokens(tokensOf(t)), `${fmtTokens(t.input_tokens)} in · ${fmtTokens(t.output_tokens)} out`, `stat-${prefix}-tokens`, tokensOf(t)),
      stat('Cost', fmtUsd(t.cost_usd), unpricedNote(t), `stat-${prefix}-cost`, t.cost_usd)
    );
  };

  const run = (quiet) => {
    const monthReport = usage({ preset: 'this_month', bucket: 'month', group_by: 'provider' });
    const users = usersById();
    return Promise.all([
      load(today, ctx, async () => {
        const r = await usage({ preset: 'today', bucket: 'day' });
        return [r.note ? h('p', { class: 'note', text: r.note }) : null, statsOf(r, 'today')];
      }, quiet),
      load(month, ctx, async () => statsOf(await monthReport, 'month'), quiet),
      load(split, ctx, async () => providerSplit(await monthReport), quiet),
      load(circuits, ctx, async () => {
        const [list, names] = await Promise.all([get('/v1/circuits'), users]);
        return openCircuits(list, await keysOf(list), names, () => run(true));
      }, quiet),
      load(top, ctx, async () => {
        const [r, names] = await Promise.all([usage({ preset: 'this_month', bucket: 'month', group_by: 'user' }), users]);
        return topUsers(r, names);
      }, quiet),
      load(throughput, ctx, async () => {
        const r = await usage({ preset: 'last_24h', bucket: 'hour', group_by: 'provider' });
        const p = perBucket(r, 'provider');
        const series = [...p.groups.entries()].map(([g, sums]) => ({
          name: PROVIDERS[g] || g,
          color: PROVIDER_COLOR[g],
          values: sums.map((s) => s.requests),
        }));
        return h(
          'div',
          { class: 'grid cols-2' },
          barChart({ title: 'Requests per hour', labels: p.labels, series, format: fmtInt, id: 'chart-throughput', empty: 'No requests in the last 24 hours.' }),
          barChart({ title: 'Tokens per hour', labels: p.labels, series: tokenSeries(p.sums), format: fmtTokens, id: 'chart-tokens-24h', empty: 'No tokens in the last 24 hours.' })
        );
      }, quiet),
      load(alerts, ctx, async () => recentAlerts((await get('/v1/audit', { type: 'alert_raised', limit: 5 })).items), quiet),
    ]);
  };
  refresh.addEventListener('click', () => run(true));
  state.timers.push(setInterval(() => run(true), 30000));
  return run(false);
}

/** The latest alerts the projector raised (audit events of type `alert_raised`). */
function recentAlerts(items) {
  if (!items.length) return emptyEl('No alerts: budgets, circuits, Bedrock keys and usage look normal.');
  return h(
    'ul',
    { id: 'overview-alerts' },
    items.map((a) => {
      const d = a.details || {};
      return h(
        'li',
        { 'data-rule': d.rule || '' },
        badge(d.severity || 'alert', d.severity === 'critical' ? 'bad' : 'warn'),
        ' ',
        h('span', { text: d.message || a.event_type }),
        ' ',
        timeEl(a.occurred_at, fmtAgo(a.occurred_at))
      );
    })
  );
}

function providerSplit(report) {
  const t = report.totals;
  if (!t.requests) return emptyEl('No requests this month yet.');
  const by = new Map();
  for (const r of report.rows) {
    const c = by.get(r.provider) || zeroCounts();
    addCounts(c, r);
    by.set(r.provider, c);
  }
  const order = ['anthropic', 'bedrock', 'none'].filter((p) => by.has(p));
  const bar = h('div', { class: 'split', role: 'img', 'aria-label': order.map((p) => `${PROVIDERS[p]} ${fmtPct(by.get(p).requests / t.requests)}`).join(', ') });
  for (const p of order) {
    const span = h('span', { class: `s${PROVIDER_COLOR[p]}`, title: `${PROVIDERS[p]}: ${fmtInt(by.get(p).requests)} requests` });
    span.style.width = `${(by.get(p).requests / t.requests) * 100}%`;
    bar.append(span);
  }
  return [
    bar,
    h(
      'ul',
      { class: 'legend' },
      order.map((p) =>
        h(
          'li',
          { 'data-provider': p },
          h('span', { class: `swatch s${PROVIDER_COLOR[p]}`, 'aria-hidden': 'true' }),
          `${PROVIDERS[p]}: ${fmtInt(by.get(p).requests)} requests (${fmtPct(by.get(p).requests / t.requests)}), ${fmtUsd(by.get(p).cost)}`
        )
      )
    ),
    h(
      'dl',
      { class: 'stats' },
      stat('Fallback rate', fmtPct(t.fallbacks / t.requests), `${fmtInt(t.fallbacks)} requests went to Bedrock on failure`, 'stat-fallback-rate', t.fallbacks / t.requests),
      stat('Error rate', fmtPct(t.errors / t.requests), `${fmtInt(t.errors)} requests`, 'stat-error-rate', t.errors / t.requests)
    ),
  ];
}

function topUsers(report, users) {
  const rows = report.rows
    .map((r) => ({ id: r.user_id, cost: Number(r.cost_usd) || 0, requests: r.requests }))
    .sort((a, b) => b.cost - a.cost || b.requests - a.requests)
    .slice(0, 8);
  if (!rows.length) return emptyEl('No usage this month yet.');
  const max = Math.max(...rows.map((r) => r.cost)) || 1;
  return h(
    'ol',
    { class: 'hbars', id: 'top-users' },
    rows.map((r) => {
      const fill = h('span');
      fill.style.width = `${(r.cost / max) * 100}%`;
      return h(
        'li',
        null,
        userLink(r.id, users),
        h('span', { class: 'track', 'aria-hidden': 'true' }, fill),
        h('span', { class: 'value', text: `${fmtUsd(r.cost)} · ${fmtInt(r.requests)} req` })
      );
    })
  );
}
