// The developer's self-service page: paste your access key, see your own usage, budget, Plan
// limits, failovers and recent requests from GET /v1/self. A native ES module, no libraries (the
// DOM builder, number formatting, stats and tables are the dashboard's, from js/shared/); the
// key is kept in this module's memory only (never in storage, the URL or a cookie), and every
// value is rendered as text nodes, never as HTML.

import { $, h } from './js/shared/dom.js';
import { fmtInt as int } from './js/shared/format.js';
import { badge, table as dataTable, stat } from './js/shared/widgets.js';

let accessKey = null;

const usd = (s) => {
  const n = Number(s || 0);
  return n !== 0 && Math.abs(n) < 0.01 ? `$${n.toFixed(4)}` : `$${n.toFixed(2)}`;
};
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
const pct = (u) => (u === null || u === undefined ? '—' : `${Math.round(Number(u) * 100)}%`);

/** The Claude Code settings fragment of the status line (the same `ccpctl onboard` prints). */
const STATUSLINE_SETTINGS = JSON.stringify({ statusLine: { type: 'command', command: '~/.claude/ccp-statusline', refreshInterval: 5 } }, null, 2);

/** A table with a caption, or a line saying there is nothing to show. */
function table(caption, headers, rows) {
  if (!rows.length) return h('p', { class: 'muted', text: `${caption}: none.` });
  return dataTable({ caption, columns: headers.map((label, i) => ({ label, cell: (r) => r[i] })), rows });
}

function usagePanel(title, report) {
  const t = report.totals;
  const rows = report.rows.map((r) => [
    r.model || '—',
    r.provider || '—',
    int(r.requests),
    int(r.input_tokens + r.cache_read_tokens + r.cache_creation_tokens),
    int(r.output_tokens),
    usd(r.cost_usd),
  ]);
  return h(
    'section',
    { class: 'panel', 'aria-label': title },
    h('h2', { text: title }),
    h(
      'dl',
      { class: 'stats' },
      stat('Requests', int(t.requests), `${int(t.errors)} errors`),
      stat('Cost', usd(t.cost_usd), t.unpriced_requests ? `+ ${int(t.unpriced_requests)} unpriced requests (cost unknown)` : undefined),
      stat('Failed over to Bedrock', int(t.fallbacks)),
      stat('Output tokens', int(t.output_tokens)),
    ),
    table(`${title} by model and provider`, ['Model', 'Provider', 'Requests', 'Input tokens', 'Output tokens', 'Cost'], rows),
  );
}

/** A budget's month: `title`, the panel's `id`, what "spent" covers (`whose`). */
function budgetPanel(b, { title = `Budget ${b.month}`, id = 'me-budget', whose = '' } = {}) {
  const limit = b.limit_usd === null ? null : Number(b.limit_usd);
  const spent = Number(b.spent_usd);
  const children = [h('h2', { text: title })];
  if (whose) children.push(h('p', { class: 'muted small', text: whose }));
  if (limit === null) {
    children.push(h('p', { text: `${usd(spent)} spent this month; no monthly limit.` }));
  } else {
    const ratio = limit > 0 ? Math.min(spent / limit, 1) : 1;
    const fill = h('span', {});
    fill.style.width = `${ratio * 100}%`;
    children.push(
      h('dl', { class: 'stats' }, stat('Spent', usd(spent)), stat('Limit', usd(limit)), stat('Remaining', usd(b.remaining_usd))),
      h('div', { class: `bar${b.exhausted ? ' bad' : ratio > 0.8 ? ' warn' : ''}`, role: 'img', 'aria-label': `${Math.round(ratio * 100)}% of the budget used` }, fill),
    );
  }
  children.push(h('p', { class: 'muted small', text: `Resets ${when(b.reset_at)} (${b.time_zone}).` }));
  return h('section', { class: 'panel', id }, children);
}

function planPanel(plan) {
  const children = [h('h2', { text: 'Plan limits (as Anthropic last reported)' })];
  if (!plan) {
    children.push(h('p', { class: 'muted', text: 'Anthropic has not reported your Plan limits yet.' }));
    return h('section', { class: 'panel', id: 'me-plan' }, children);
  }
  const s = plan.state;
  const u = s.unified;
  const stats = [];
  if (u) {
    const kind = u.status === 'rejected' ? 'bad' : u.status === 'allowed' ? 'ok' : 'warn';
    stats.push(stat('Subscription', badge(u.status || 'unknown', kind), u.reset ? `resets ${when(u.reset)}` : null));
    if (u.five_hour) stats.push(stat('5-hour window', pct(u.five_hour.utilization), u.five_hour.reset ? `resets ${when(u.five_hour.reset)}` : null));
    if (u.seven_day) stats.push(stat('7-day window', pct(u.seven_day.utilization), u.seven_day.reset ? `resets ${when(u.seven_day.reset)}` : null));
  }
  for (const [name, label] of [['requests', 'Requests left'], ['input_tokens', 'Input tokens left'], ['output_tokens', 'Output tokens left']]) {
    const l = s[name];
    if (l && l.remaining !== undefined) stats.push(stat(label, int(l.remaining), l.limit !== undefined ? `of ${int(l.limit)}` : null));
  }
  if (s.retry_after_secs !== undefined) stats.push(stat('Retry after', `${int(s.retry_after_secs)} s`));
  children.push(h('dl', { class: 'stats' }, stats));
  children.push(h('p', { class: 'muted small', text: `Seen ${when(s.observed_at)} on an HTTP ${s.status} answer (key ${plan.key_id}).` }));
  return h('section', { class: 'panel', id: 'me-plan' }, children);
}

function requestRows(list) {
  return list.map((r) => [
    h('code', { text: r.request_id }),
    when(r.occurred_at),
    r.response_model || r.requested_model || '—',
    r.provider + (r.fallback_reason ? ` (${r.fallback_reason})` : ''),
    String(r.status) + (r.error_class ? ` ${r.error_class}` : ''),
    usd(r.cost_usd),
  ]);
}

function render(data) {
  const root = $('#me-report');
  root.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1', text: `${data.user.name}: my usage` }),
      h('div', { class: 'actions' }, h('button', { type: 'button', id: 'me-refresh', class: 'button subtle', text: 'Refresh' }), h('button', { type: 'button', id: 'me-forget', class: 'button subtle', text: 'Forget key' })),
    ),
    h('div', { class: 'grid cols-2' }, budgetPanel(data.budget), planPanel(data.plan_limit)),
    ...(data.team_budget
      ? [
          budgetPanel(data.team_budget, {
            title: `Team ${data.team_budget.name}: budget ${data.team_budget.month}`,
            id: 'me-team-budget',
            whose: 'Your team’s requests together. A request is refused when your own budget or the team’s is used up.',
          }),
        ]
      : []),
    usagePanel(`Today (${data.tz})`, data.today),
    usagePanel(`This month (${data.tz})`, data.this_month),
    h(
      'section',
      { class: 'panel', id: 'me-keys' },
      h('h2', { text: 'My access keys this month' }),
      table(
        'Access keys',
        ['Key', 'Name', 'Status', 'Bedrock fallback', 'Requests', 'Cost'],
        data.keys.map((k) => {
          const row = data.this_month_by_key.rows.filter((r) => r.key_id === k.key_id);
          const requests = row.reduce((n, r) => n + r.requests, 0);
          const cost = row.reduce((n, r) => n + Number(r.cost_usd), 0);
          return [`${k.key_prefix}…${k.current ? ' (this key)' : ''}`, k.name || '—', k.status, k.bedrock_fallback ? 'yes' : 'no', int(requests), usd(cost)];
        }),
      ),
    ),
    h(
      'section',
      { class: 'panel', id: 'me-failovers' },
      h('h2', { text: `Failovers to Amazon Bedrock: ${int(data.failovers.this_month)} this month` }),
      table('Latest failovers (reason in brackets)', ['Request id', 'When', 'Model', 'Provider', 'Status', 'Cost'], requestRows(data.failovers.recent)),
    ),
    h(
      'section',
      { class: 'panel', id: 'me-requests' },
      h('h2', { text: 'Latest requests' }),
      h('p', { class: 'muted small', text: 'Quote the request id when you ask your platform team for help.' }),
      table('Latest requests', ['Request id', 'When', 'Model', 'Provider', 'Status', 'Cost'], requestRows(data.recent_requests)),
    ),
    h(
      'section',
      { class: 'panel', id: 'me-statusline' },
      h('h2', { text: 'See this in Claude Code' }),
      h('p', { text: 'Claude Code can show your Plan limits, a failover to Bedrock and your budget under its prompt. Copy scripts/ccp-statusline from the ClaudeCodeProxy repository (or ask your platform team for it) to ~/.claude/ccp-statusline, make it executable, and add this to ~/.claude/settings.json:' }),
      h('pre', { id: 'me-statusline-settings', text: STATUSLINE_SETTINGS }),
      h('p', { class: 'muted small', text: 'It reads your access key from ANTHROPIC_BASE_URL or ANTHROPIC_CUSTOM_HEADERS, as Claude Code does; the settings hold no key.' }),
    ),
  );
  $('#me-login').hidden = true;
  root.hidden = false;
  $('#me-refresh').addEventListener('click', () => load());
  $('#me-forget').addEventListener('click', forget);
  $('#me-report h1').focus();
}

function forget() {
  accessKey = null;
  $('#me-report').replaceChildren();
  $('#me-report').hidden = true;
  $('#me-login').hidden = false;
  $('#me-key').value = '';
  $('#me-key').focus();
}

function showError(message) {
  const box = $('#me-error');
  box.textContent = message;
  box.hidden = false;
  // A failed refresh: the form (and its error box) is hidden behind the report, so say it
  // above the figures shown (the next successful answer replaces them and this message).
  const report = $('#me-report');
  if (!report.hidden) {
    $('#me-report-error')?.remove();
    report.prepend(h('p', { id: 'me-report-error', class: 'error-box', role: 'alert', text: `Not refreshed: ${message}` }));
  }
}

async function load() {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  let resp;
  try {
    resp = await fetch(`/v1/self?tz=${encodeURIComponent(tz)}`, {
      headers: { 'x-ccp-access-key': accessKey, accept: 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    showError(`The server could not be reached (${e.message}).`);
    return;
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    body = null;
  }
  if (!resp.ok) {
    if (resp.status === 401) forget();
    const msg = body && body.error ? body.error.message : `HTTP ${resp.status}`;
    showError(`${msg}${body && body.request_id ? ` (request id ${body.request_id})` : ''}`);
    return;
  }
  $('#me-error').hidden = true;
  render(body);
}

document.addEventListener('DOMContentLoaded', () => {
  $('#me-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = $('#me-key').value.trim();
    $('#me-key').value = '';
    if (!value) {
      showError('Paste your access key (it starts with ak_).');
      return;
    }
    accessKey = value;
    load();
  });
});
