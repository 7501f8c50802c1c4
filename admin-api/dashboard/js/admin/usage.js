// The usage page: range, bucket, time zone and filters, totals, charts and the table of rows.

import { ApiError, get, usersById } from './api.js';
import { barChart, perBucket, tokenSeries, tokensOf } from './charts.js';
import { exportCsv } from './csv.js';
import { PROVIDERS } from './labels.js';
import { BROWSER_TZ, state, TZ_KEY } from './state.js';
import { fmtTime } from './time.js';
import { load, pageHead, replaceQuery, toast, unpricedNote, userLink } from './ui.js';
import { clear, h } from '../shared/dom.js';
import { fmtInt, fmtPct, fmtTokens, fmtUsd, fmtUsdShort } from '../shared/format.js';
import { badge, stat, table } from '../shared/widgets.js';

const PRESETS = [
  ['today', 'Today'],
  ['yesterday', 'Yesterday'],
  ['last_24h', 'Last 24 hours'],
  ['last_7d', 'Last 7 days'],
  ['last_30d', 'Last 30 days'],
  ['this_month', 'This month'],
  ['last_month', 'Last month'],
  ['custom', 'Custom range'],
];
const BUCKETS = [
  ['', 'Automatic'],
  ['minute', 'Minute'],
  ['hour', 'Hour'],
  ['day', 'Day'],
  ['week', 'Week'],
  ['month', 'Month'],
];
const GROUPS = [
  ['', 'Time only'],
  ['user', 'User'],
  ['key', 'Key'],
  ['model', 'Model'],
  ['provider', 'Provider'],
  ['team', 'Team (at request time)'],
];

/** Offset of a time zone from UTC at instant `t`, in ms (throws for an unknown zone). */
function tzOffset(t, tz) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(t));
  const v = (type) => Number(parts.find((p) => p.type === type).value);
  return Date.UTC(v('year'), v('month') - 1, v('day'), v('hour'), v('minute'), v('second')) - Math.floor(t / 1000) * 1000;
}

/** A `datetime-local` value read as wall time in `tz`, as RFC 3339 UTC. */
export function zonedToUtc(local, tz) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local || '');
  if (!m) return null;
  const asUtc = Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5]);
  let t = asUtc;
  try {
    for (let i = 0; i < 2; i++) t = asUtc - tzOffset(t, tz);
  } catch (_) {
    t = new Date(local).getTime();
  }
  return new Date(t).toISOString().replace('.000Z', 'Z');
}

export function viewUsage(ctx) {
  const p = ctx.params;
  const q = {
    preset: p.get('preset') || (p.get('from') ? 'custom' : 'last_7d'),
    from: p.get('from') || '',
    to: p.get('to') || '',
    bucket: p.get('bucket') || '',
    tz: p.get('tz') || state.tz,
    user_id: p.get('user_id') || '',
    key_id: p.get('key_id') || '',
    model: p.get('model') || '',
    provider: p.get('provider') || '',
    group: p.get('group') || '',
  };
  const opt = (list) => list.map(([v, t]) => h('option', { value: v, text: t }));
  const preset = h('select', { id: 'usage-preset', name: 'preset' }, opt(PRESETS));
  const from = h('input', { id: 'usage-from', name: 'from', type: 'datetime-local', value: q.from });
  const to = h('input', { id: 'usage-to', name: 'to', type: 'datetime-local', value: q.to });
  const bucket = h('select', { id: 'usage-bucket', name: 'bucket' }, opt(BUCKETS));
  const zones = [...new Set([BROWSER_TZ, 'UTC', state.tz, 'Europe/London', 'Europe/Berlin', 'America/New_York', 'America/Los_Angeles', 'Asia/Tokyo', 'Asia/Kolkata', 'Australia/Sydney'])];
  const tz = h('input', { id: 'usage-tz', name: 'tz', value: q.tz, list: 'tz-list', autocomplete: 'off', spellcheck: 'false' });
  const tzList = h('datalist', { id: 'tz-list' }, zones.map((z) => h('option', { value: z })));
  const user = h('select', { id: 'usage-user', name: 'user_id' }, h('option', { value: '', text: 'All users' }));
  const key = h('select', { id: 'usage-key', name: 'key_id' }, h('option', { value: '', text: 'All keys' }));
  const model = h('input', { id: 'usage-model', name: 'model', value: q.model, placeholder: 'any model', autocomplete: 'off' });
  const provider = h('select', { id: 'usage-provider', name: 'provider' }, opt([['', 'Any provider'], ['anthropic', 'Plan (Anthropic)'], ['bedrock', 'Bedrock']]));
  const group = h('select', { id: 'usage-group', name: 'group' }, opt(GROUPS));
  preset.value = q.preset;
  bucket.value = q.bucket;
  provider.value = q.provider;
  group.value = q.group;
  const custom = h('div', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: 'usage-from', text: 'From' }), from),
    h('div', { class: 'field' }, h('label', { for: 'usage-to', text: 'To (empty: now)' }), to));
  const syncCustom = () => {
    custom.hidden = preset.value !== 'custom';
    from.required = preset.value === 'custom';
  };
  preset.addEventListener('change', syncCustom);
  syncCustom();
  const exportButton = h('button', { type: 'button', id: 'export-csv', class: 'subtle', text: 'Export CSV', disabled: true });
  const results = h('div', { id: 'usage-results' });
  const form = h(
    'form',
    { id: 'usage-form', class: 'form-stack' },
    h(
      'div',
      { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'usage-preset', text: 'Range' }), preset),
      custom,
      h('div', { class: 'field' }, h('label', { for: 'usage-bucket', text: 'Bucket' }), bucket),
      h('div', { class: 'field' }, h('label', { for: 'usage-tz', text: 'Time zone' }), tz, tzList)
    ),
    h(
      'div',
      { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'usage-user', text: 'User' }), user),
      h('div', { class: 'field' }, h('label', { for: 'usage-key', text: 'Key' }), key),
      h('div', { class: 'field' }, h('label', { for: 'usage-model', text: 'Model' }), model),
      h('div', { class: 'field' }, h('label', { for: 'usage-provider', text: 'Provider' }), provider),
      h('div', { class: 'field' }, h('label', { for: 'usage-group', text: 'Table rows per' }), group),
      h('button', { type: 'submit', id: 'usage-apply', text: 'Show' }),
      exportButton
    )
  );
  ctx.main.append(...pageHead('Usage'), h('div', { class: 'panel' }, form), results);

  let users = new Map();
  let teams = new Map();
  const loadKeys = async () => {
    clear(key).append(h('option', { value: '', text: 'All keys' }));
    key.disabled = !user.value;
    if (!user.value) return;
    try {
      for (const k of await get(`/v1/users/${user.value}/keys`)) key.append(h('option', { value: k.key_id, text: `${k.name ? `${k.name} ` : ''}${k.masked}${k.status === 'revoked' ? ' (revoked)' : ''}` }));
      key.value = q.key_id;
    } catch (e) {
      toast(e.message, true);
    }
  };
  user.addEventListener('change', () => {
    q.key_id = '';
    loadKeys();
  });

  let report = null;
  exportButton.addEventListener('click', () => {
    if (report) exportCsv(report, users);
  });

  const show = () => {
    const query = {
      bucket: q.bucket || undefined,
      user_id: q.user_id || undefined,
      key_id: q.key_id || undefined,
      model: q.model || undefined,
      provider: q.provider || undefined,
      group_by: q.group || undefined,
      tz: q.tz || undefined,
    };
    if (q.preset === 'custom') {
      query.from = zonedToUtc(q.from, q.tz);
      query.to = q.to ? zonedToUtc(q.to, q.tz) : undefined;
    } else {
      query.preset = q.preset;
    }
    replaceQuery('/usage', {
      preset: q.preset === 'custom' ? '' : q.preset,
      from: q.preset === 'custom' ? q.from : '',
      to: q.preset === 'custom' ? q.to : '',
      bucket: q.bucket,
      tz: q.tz === state.tz ? '' : q.tz,
      user_id: q.user_id,
      key_id: q.key_id,
      model: q.model,
      provider: q.provider,
      group: q.group,
    });
    exportButton.disabled = true;
    report = null;
    return load(results, ctx, async () => {
      if (q.preset === 'custom' && !query.from) throw new Error('Choose the start of the custom range.');
      const r = await get('/v1/usage', query);
      report = r;
      exportButton.disabled = !r.rows.length;
      return usageResults(r, q, users, teams);
    });
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    Object.assign(q, {
      preset: preset.value,
      from: from.value,
      to: to.value,
      bucket: bucket.value,
      tz: tz.value.trim() || BROWSER_TZ,
      user_id: user.value,
      key_id: key.value,
      model: model.value.trim(),
      provider: provider.value,
      group: group.value,
    });
    if (q.tz !== state.tz) {
      state.tz = q.tz;
      localStorage.setItem(TZ_KEY, q.tz);
    }
    show();
  });

  return (async () => {
    try {
      users = await usersById();
      teams = new Map((await get('/v1/teams')).map((t) => [t.team_id, t]));
      for (const u of [...users.values()].sort((a, b) => a.name.localeCompare(b.name))) user.append(h('option', { value: u.user_id, text: u.name }));
      user.value = q.user_id;
      await loadKeys();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) toast(`Users could not be loaded: ${e.message}`, true);
    }
    if (ctx.alive()) await show();
  })();
}

function usageResults(r, q, users, teams) {
  const t = r.totals;
  const groupCol = { user: 'user_id', key: 'key_id', team: 'team_id' }[q.group] || q.group || null;
  const p = perBucket(r);
  const rows = r.rows.slice(-1000).reverse();
  const groupCell = (row) => {
    if (groupCol === 'user_id') return userLink(row.user_id, users);
    if (groupCol === 'key_id') return row.key_id ? h('code', { text: row.key_id }) : h('span', { class: 'muted', text: '(none)' });
    if (groupCol === 'provider') return PROVIDERS[row.provider] || row.provider;
    if (groupCol === 'team_id') return row.team_id ? h('a', { href: `#/teams/${row.team_id}`, text: (teams.get(row.team_id) || {}).name || row.team_id }) : h('span', { class: 'muted', text: '(no team)' });
    return row[groupCol] || '–';
  };
  const columns = [
    { label: 'Bucket start', cell: (row) => h('time', { datetime: row.bucket_start, text: row.bucket_start.replace('T', ' ').replace(/:00([+-]\d\d:\d\d|Z)$/, ' $1') }) },
    groupCol ? { label: GROUPS.find((g) => g[0] === q.group)[1], cell: groupCell } : null,
    { label: 'Requests', num: true, cell: (row) => fmtInt(row.requests) },
    { label: 'Errors', num: true, cell: (row) => fmtInt(row.errors) },
    { label: 'Fallbacks', num: true, cell: (row) => fmtInt(row.fallbacks) },
    { label: 'Input', num: true, cell: (row) => fmtInt(row.input_tokens) },
    { label: 'Output', num: true, cell: (row) => fmtInt(row.output_tokens) },
    { label: 'Cache read', num: true, cell: (row) => fmtInt(row.cache_read_tokens) },
    { label: 'Cache write', num: true, cell: (row) => fmtInt(row.cache_creation_tokens) },
    { label: 'Cost', num: true, cell: (row) => fmtUsd(row.cost_usd) },
    { label: 'Unpriced', num: true, cell: (row) => (row.unpriced_requests ? badge(`${fmtInt(row.unpriced_requests)} unpriced`, 'warn') : '–') },
  ].filter(Boolean);
  return [
    h(
      'div',
      { class: 'panel' },
      h('p', { class: 'muted small', text: `${fmtTime(r.from)} to ${fmtTime(r.to)} · ${r.tz} · per ${r.bucket}` }),
      h(
        'dl',
        { class: 'stats', id: 'usage-totals' },
        stat('Requests', fmtInt(t.requests), null, 'usage-total-requests', t.requests),
        stat('Tokens', fmtTokens(tokensOf(t)), null, 'usage-total-tokens', tokensOf(t)),
        stat('Cost', fmtUsd(t.cost_usd), unpricedNote(t), 'usage-total-cost', t.cost_usd),
        stat('Fallbacks', fmtInt(t.fallbacks), t.requests ? fmtPct(t.fallbacks / t.requests) : null, 'usage-total-fallbacks', t.fallbacks),
        stat('Errors', fmtInt(t.errors), t.requests ? fmtPct(t.errors / t.requests) : null, 'usage-total-errors', t.errors)
      )
    ),
    h(
      'div',
      { class: 'grid cols-2' },
      h('div', { class: 'panel' }, barChart({ title: 'Tokens by type', labels: p.labels, series: tokenSeries(p.sums), format: fmtTokens, id: 'chart-usage-tokens', empty: 'No tokens in this range.' })),
      h('div', { class: 'panel' }, barChart({ title: 'Cost', labels: p.labels, series: [{ name: 'Cost', values: p.sums.map((s) => s.cost) }], format: fmtUsdShort, id: 'chart-usage-cost', empty: 'No cost in this range.' }))
    ),
    h(
      'div',
      { class: 'panel' },
      table({
        id: 'usage-table',
        caption: `${fmtInt(r.rows.length)} row${r.rows.length === 1 ? '' : 's'}, newest first${r.rows.length > 1000 ? ' (the newest 1000 shown; the CSV has all)' : ''}`,
        empty: 'No usage in this range with these filters.',
        columns,
        rows,
      })
    ),
  ];
}
