// Time buckets of usage reports and the hand-written SVG bar charts (no libraries).

import { h, svg } from '../shared/dom.js';
import { pad } from '../shared/format.js';
import { emptyEl } from '../shared/widgets.js';

export const tokensOf = (u) => u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_creation_tokens;

/** Wall-clock parts of an RFC 3339 time as written (in the report's time zone). */
function wall(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(iso);
  return m ? { y: +m[1], mo: +m[2], d: +m[3], h: +m[4], mi: +m[5] } : null;
}

function offsetMs(iso) {
  const m = /([+-])(\d{2}):(\d{2})$/.exec(iso);
  return m ? (m[1] === '-' ? -1 : 1) * (+m[2] * 60 + +m[3]) * 60000 : 0;
}

const isoDate = (t) => new Date(t).toISOString().slice(0, 10);

function bucketKey(iso, bucket) {
  if (bucket === 'minute' || bucket === 'hour') return String(Date.parse(iso));
  const w = wall(iso);
  if (bucket === 'month') return `${w.y}-${pad(w.mo)}`;
  return `${w.y}-${pad(w.mo)}-${pad(w.d)}`;
}

function axisLabel(key, bucket, tz) {
  if (bucket === 'minute' || bucket === 'hour') {
    let f;
    try {
      f = new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', day: '2-digit', month: 'short' });
    } catch (_) {
      f = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', day: '2-digit', month: 'short' });
    }
    return f.format(new Date(Number(key)));
  }
  const [y, mo, d] = key.split('-').map(Number);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  if (bucket === 'month') return `${months[mo - 1]} ${y}`;
  return `${bucket === 'week' ? 'wk ' : ''}${d} ${months[mo - 1]}`;
}

/** Every bucket of a report's range, oldest first (the API returns only non-empty ones). */
export function timeline(report) {
  const b = report.bucket;
  const keys = [];
  if (b === 'minute' || b === 'hour') {
    const step = b === 'minute' ? 60000 : 3600000;
    const off = offsetMs(report.from);
    const end = Date.parse(report.to);
    for (let t = Math.floor((Date.parse(report.from) + off) / step) * step - off; t < end && keys.length < 6000; t += step) {
      keys.push(String(t));
    }
  } else {
    const f = wall(report.from);
    const e = wall(report.to);
    let t = b === 'month' ? Date.UTC(f.y, f.mo - 1, 1) : Date.UTC(f.y, f.mo - 1, f.d);
    if (b === 'week') t -= ((new Date(t).getUTCDay() + 6) % 7) * 86400000;
    const end = Date.UTC(e.y, e.mo - 1, e.d) + (e.h || e.mi ? 86400000 : 0);
    while (t < end && keys.length < 6000) {
      const d = new Date(t);
      keys.push(b === 'month' ? `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}` : isoDate(t));
      if (b === 'day') t += 86400000;
      else if (b === 'week') t += 7 * 86400000;
      else t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    }
  }
  return keys;
}

export const zeroCounts = () => ({
  requests: 0,
  errors: 0,
  fallbacks: 0,
  input_tokens: 0,
  output_tokens: 0,
  cache_read_tokens: 0,
  cache_creation_tokens: 0,
  cost: 0,
});

export function addCounts(sum, row) {
  for (const k of Object.keys(sum)) if (k !== 'cost') sum[k] += row[k] || 0;
  sum.cost += Number(row.cost_usd) || 0;
}

/** Sums of a report's rows per bucket (and optionally per `split` value), over its whole timeline. */
export function perBucket(report, split) {
  const keys = timeline(report);
  const index = new Map(keys.map((k, i) => [k, i]));
  for (const r of report.rows) {
    const k = bucketKey(r.bucket_start, report.bucket);
    if (!index.has(k)) {
      keys.push(k);
      index.set(k, keys.length - 1);
    }
  }
  const numeric = report.bucket === 'minute' || report.bucket === 'hour';
  keys.sort((a, b) => (numeric ? Number(a) - Number(b) : a < b ? -1 : a > b ? 1 : 0));
  keys.forEach((k, i) => index.set(k, i));
  const sums = keys.map(() => zeroCounts());
  const groups = new Map();
  for (const r of report.rows) {
    const i = index.get(bucketKey(r.bucket_start, report.bucket));
    addCounts(sums[i], r);
    if (split) {
      const g = r[split] || '';
      if (!groups.has(g)) groups.set(g, keys.map(() => zeroCounts()));
      addCounts(groups.get(g)[i], r);
    }
  }
  return { keys, labels: keys.map((k) => axisLabel(k, report.bucket, report.tz)), sums, groups };
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const n = raw / p;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * p;
}

/**
 * A bar chart in SVG (stacked when several series): axes, grid, readable labels, a <title>
 * per bar for the exact value, a legend, and a text summary for screen readers.
 */
export function barChart({ title, labels, series, format, empty, id, height }) {
  const n = labels.length;
  const totals = labels.map((_, i) => series.reduce((s, x) => s + (x.values[i] || 0), 0));
  const max = Math.max(0, ...totals);
  const fig = h('figure', { class: 'chart', id });
  fig.append(h('figcaption', { text: title }));
  if (!n || max <= 0) {
    fig.append(emptyEl(empty || 'Nothing in this range.'));
    return fig;
  }
  const W = 760;
  const H = height || 230;
  const m = { l: 64, r: 10, t: 10, b: 30 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const step = niceStep(max / 4);
  const top = Math.ceil(max / step) * step;
  const y = (v) => m.t + ph - (v / top) * ph;
  const peak = totals.indexOf(max);
  const total = totals.reduce((a, b) => a + b, 0);
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': `${title}: ${format(total)} in total over ${n} buckets; peak ${format(max)} at ${labels[peak]}.`,
    preserveAspectRatio: 'xMidYMid meet',
  });
  const grid = svg('g', { class: 'axis', 'aria-hidden': 'true' });
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.append(
      svg('line', { class: 'grid-line', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
      svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end', text: format(v) })
    );
  }
  grid.append(svg('line', { x1: m.l, x2: W - m.r, y1: m.t + ph, y2: m.t + ph }));
  root.append(grid);
  const bw = pw / n;
  const gap = bw > 4 ? Math.min(bw * 0.2, 8) : 0;
  const bars = svg('g');
  for (let i = 0; i < n; i++) {
    let base = 0;
    series.forEach((s, k) => {
      const v = s.values[i] || 0;
      if (v <= 0) return;
      const y0 = y(base);
      const y1 = y(base + v);
      base += v;
      bars.append(
        svg(
          'rect',
          {
            class: `bar-rect s${s.color !== undefined ? s.color : k}`,
            x: (m.l + i * bw + gap / 2).toFixed(2),
            y: y1.toFixed(2),
            width: Math.max(bw - gap, 0.5).toFixed(2),
            height: Math.max(y0 - y1, 0.5).toFixed(2),
          },
          svg('title', { text: `${labels[i]} · ${s.name}: ${format(v)}` })
        )
      );
    });
  }
  root.append(bars);
  const every = Math.max(1, Math.ceil(n / 8));
  const xl = svg('g', { 'aria-hidden': 'true' });
  for (let i = 0; i < n; i += every) {
    xl.append(svg('text', { x: m.l + i * bw + bw / 2, y: H - 10, 'text-anchor': 'middle', text: labels[i] }));
  }
  root.append(xl);
  fig.append(root);
  if (series.length > 1) {
    fig.append(
      h(
        'ul',
        { class: 'legend' },
        series.map((s, k) =>
          h('li', null, h('span', { class: `swatch s${s.color !== undefined ? s.color : k}`, 'aria-hidden': 'true' }), s.name)
        )
      )
    );
  }
  return fig;
}

export const tokenSeries = (sums) => [
  { name: 'Input', values: sums.map((s) => s.input_tokens) },
  { name: 'Output', values: sums.map((s) => s.output_tokens) },
  { name: 'Cache read', values: sums.map((s) => s.cache_read_tokens) },
  { name: 'Cache write', values: sums.map((s) => s.cache_creation_tokens) },
];
