// ClaudeCodeProxy dashboard: one page over the admin REST API. Plain JavaScript, no build step,
// no libraries. The session is the HttpOnly `ccp_session` cookie set by POST /v1/auth/login; the
// CSRF token from that answer is kept in sessionStorage (this tab only) and sent as
// `x-csrf-token` on every change. Nothing secret is ever kept or shown, except a newly issued
// access key inside its one-time dialog (removed from the page when the dialog closes).
'use strict';

(function () {
  const CSRF_KEY = 'ccp.csrf';
  const TZ_KEY = 'ccp.tz';
  const SVGNS = 'http://www.w3.org/2000/svg';
  const BROWSER_TZ = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    } catch (_) {
      return 'UTC';
    }
  })();

  const state = {
    csrf: sessionStorage.getItem(CSRF_KEY),
    admin: null,
    tz: localStorage.getItem(TZ_KEY) || BROWSER_TZ,
    generation: 0,
    timers: [],
    lastPath: null,
  };

  // ---------------------------------------------------------------------------------------
  // DOM helpers (elements are built, never parsed from strings: API values stay text)
  // ---------------------------------------------------------------------------------------

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false || k === 'value') continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    if (attrs && attrs.value !== undefined && attrs.value !== null) el.value = attrs.value;
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.firstChild.remove();
    return el;
  }

  const $ = (sel, root) => (root || document).querySelector(sel);
  let uid = 0;
  const nextId = (prefix) => `${prefix}-${++uid}`;

  // ---------------------------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------------------------

  const intFmt = new Intl.NumberFormat('en-US');
  const compactFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
  const pad = (n) => String(n).padStart(2, '0');
  const fmtInt = (n) => intFmt.format(Number(n) || 0);
  const fmtTokens = (n) => (Math.abs(n) >= 100000 ? compactFmt.format(n) : intFmt.format(n));
  function fmtPct(x) {
    if (!Number.isFinite(x)) return '–';
    if (x > 0 && x < 0.0001) return '<0.01%';
    return `${(x * 100).toFixed(x > 0 && x < 0.001 ? 2 : 1)}%`;
  }

  function fmtUsd(value) {
    const n = Number(value) || 0;
    if (n === 0) return '$0.00';
    if (Math.abs(n) < 0.01) return `$${n.toFixed(4)}`;
    return `$${n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  }

  const fmtUsdShort = (n) => (n >= 1000 ? `$${compactFmt.format(n)}` : fmtUsd(n));

  function dateFormatter(options) {
    try {
      return new Intl.DateTimeFormat('en-GB', Object.assign({ timeZone: state.tz }, options));
    } catch (_) {
      return new Intl.DateTimeFormat('en-GB', options);
    }
  }

  function fmtTime(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return dateFormatter({ dateStyle: 'medium', timeStyle: 'short' }).format(d);
  }

  function fmtAgo(iso) {
    if (!iso) return 'never';
    const secs = (Date.now() - new Date(iso).getTime()) / 1000;
    if (secs < 60) return 'just now';
    if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
    return fmtTime(iso);
  }

  const timeEl = (iso, text) => (iso ? h('time', { datetime: iso, title: iso, text: text || fmtTime(iso) }) : '–');
  const tokensOf = (u) => u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_creation_tokens;

  const PROVIDERS = { anthropic: 'Plan (Anthropic)', bedrock: 'Bedrock', none: 'Refused by the proxy' };
  const ROUTING = {
    plan_first: 'Plan first (Anthropic; Bedrock on rate limits and failures)',
    bedrock_only: 'Bedrock only',
    plan_only: 'Plan only (never Bedrock)',
  };
  const ROUTING_SHORT = { plan_first: 'Plan first', bedrock_only: 'Bedrock only', plan_only: 'Plan only' };

  // ---------------------------------------------------------------------------------------
  // The API
  // ---------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body, fallback) {
      const e = body && body.error;
      super(e && e.message ? e.message : fallback);
      this.status = status;
      this.type = e && e.type;
      this.field = e && e.field;
      this.requestId = body && body.request_id;
    }
  }

  function queryString(query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  async function api(method, path, options) {
    const opts = options || {};
    const headers = { accept: 'application/json' };
    let body;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    if (method !== 'GET' && method !== 'HEAD' && state.csrf) headers['x-csrf-token'] = state.csrf;
    let resp;
    try {
      resp = await fetch(path + queryString(opts.query), {
        method,
        headers,
        body,
        credentials: 'same-origin',
        cache: 'no-store',
        redirect: 'error',
      });
    } catch (e) {
      throw new ApiError(0, null, `The admin API cannot be reached (${e.message}). Is ccp-admin running?`);
    }
    const text = await resp.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch (_) {
        json = null;
      }
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, json, `${method} ${path} failed with HTTP ${resp.status}`);
      if (resp.status === 401 && !opts.noAuthRedirect) sessionEnded(err.message);
      throw err;
    }
    return json;
  }

  const get = (path, query) => api('GET', path, { query });
  const send = (method, path, body) => api(method, path, { body });

  /** GET /v1/usage in the chosen time zone; a zone the server does not know falls back to its default. */
  async function usage(query) {
    const q = Object.assign({ tz: state.tz }, query);
    try {
      return await get('/v1/usage', q);
    } catch (e) {
      if (e instanceof ApiError && e.field === 'tz' && q.tz) {
        const asked = q.tz;
        delete q.tz;
        const report = await get('/v1/usage', q);
        report.note = `The server does not know the time zone ${asked}; times are in ${report.tz}.`;
        return report;
      }
      throw e;
    }
  }

  async function usersById() {
    const page = await get('/v1/users', { limit: 500 });
    return new Map(page.items.map((u) => [u.user_id, u]));
  }

  // ---------------------------------------------------------------------------------------
  // Shared pieces: states, toasts, dialogs, forms
  // ---------------------------------------------------------------------------------------

  const loadingEl = (text) => h('p', { class: 'loading', text: text || 'Loading…' });
  const emptyEl = (text) => h('div', { class: 'empty', text });

  function errorBox(err, retry) {
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
  async function load(el, ctx, build, quiet) {
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
  function toast(message, bad) {
    const el = $('#toast');
    el.className = bad ? 'toast bad' : 'toast';
    el.textContent = message;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      el.textContent = '';
    }, 6000);
  }

  /** A modal dialog: focus moves into it, Escape closes it, focus returns to the opener after. */
  function openDialog({ title, content, onClose, id }) {
    const opener = document.activeElement;
    const headingId = nextId('dialog-title');
    const dlg = h(
      'dialog',
      { 'aria-labelledby': headingId, id },
      h('div', { class: 'dialog-body' }, h('h2', { id: headingId, text: title }), content)
    );
    dlg.addEventListener('close', () => {
      if (onClose) onClose();
      dlg.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      else $('#main').focus();
    });
    document.body.append(dlg);
    dlg.showModal();
    const first = dlg.querySelector('[autofocus]') || dlg.querySelector('input, select, textarea, button');
    if (first) first.focus();
    return dlg;
  }

  function closeAllDialogs() {
    for (const d of document.querySelectorAll('dialog')) d.close();
  }

  /** A labelled form control; `options` makes a select. */
  function field({ label, name, id, type, value, required, hint, options, attrs }) {
    const controlId = id || nextId(`f-${name}`);
    const hintId = hint ? `${controlId}-hint` : undefined;
    const common = Object.assign({ id: controlId, name, required, 'aria-describedby': hintId }, attrs || {});
    let control;
    if (options) {
      control = h(
        'select',
        Object.assign(common, { value }),
        options.map(([v, text]) => h('option', { value: v, text }))
      );
    } else if (type === 'textarea') {
      control = h('textarea', Object.assign(common, { value }));
    } else {
      control = h('input', Object.assign({ type: type || 'text', value }, common));
    }
    return h(
      'div',
      { class: 'field' },
      h('label', { for: controlId, text: label }),
      control,
      hint ? h('span', { class: 'hint', id: hintId, text: hint }) : null
    );
  }

  /**
   * A dialog with a form. `onSubmit(form)` runs the command; its error is shown in the dialog
   * (the offending field marked), its result resolves the returned promise (null: cancelled).
   */
  function formDialog({ title, intro, fields, submitLabel, danger, onSubmit, id }) {
    return new Promise((resolve) => {
      let result = null;
      const errorArea = h('div', { class: 'dialog-error' });
      const submit = h('button', { type: 'submit', class: danger ? 'danger' : '', text: submitLabel, 'data-role': 'submit' });
      const form = h(
        'form',
        { class: 'form-stack', novalidate: true },
        intro ? (intro instanceof Node ? intro : h('p', { text: intro })) : null,
        fields || [],
        errorArea,
        h(
          'div',
          { class: 'form-actions' },
          h('button', { type: 'button', class: 'subtle', text: 'Cancel', onclick: () => dlg.close() }),
          submit
        )
      );
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        clear(errorArea);
        for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
        if (!form.checkValidity()) {
          const bad = form.querySelector(':invalid');
          bad.setAttribute('aria-invalid', 'true');
          errorArea.append(errorBox(new Error(`${labelOf(bad)}: ${bad.validationMessage}`)));
          bad.focus();
          return;
        }
        submit.disabled = true;
        try {
          result = await onSubmit(form);
          dlg.close();
        } catch (e) {
          errorArea.append(errorBox(e));
          const bad = e.field && form.elements.namedItem(e.field);
          if (bad && bad.focus) {
            bad.setAttribute('aria-invalid', 'true');
            bad.focus();
          }
        } finally {
          submit.disabled = false;
        }
      });
      const dlg = openDialog({ title, content: form, id, onClose: () => resolve(result) });
    });
  }

  function labelOf(control) {
    const label = control.id && document.querySelector(`label[for="${control.id}"]`);
    return label ? label.textContent : control.name;
  }

  async function copyText(text, source, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) {
      try {
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        ok = document.execCommand('copy');
      } catch (_) {
        ok = false;
      }
    }
    const original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = ok ? 'Copied' : 'Select and copy';
    toast(ok ? 'Copied to the clipboard.' : 'Copying is not allowed here: the text is selected, press Ctrl+C.', !ok);
    setTimeout(() => {
      button.textContent = original;
    }, 2000);
  }

  /** The one place an access key is shown: a dialog whose content is removed when it closes. */
  function showIssuedKey(issued, title) {
    if (!issued) return Promise.resolve();
    if (!issued.access_key) {
      toast('Done, but this answer was an idempotent replay without the key: rotate the key to get a new one.', true);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const setup = issued.claude_code || {};
      const rows = [
        ['Access key', 'onetime-key', issued.access_key, 'copy-key', 'Copy key'],
        ['Shell profile (bash, zsh)', 'onetime-export', setup.shell, 'copy-export', 'Copy line'],
        [
          'Or ~/.claude/settings.json',
          'onetime-settings',
          setup.settings_json ? JSON.stringify(setup.settings_json, null, 2) : null,
          'copy-settings',
          'Copy JSON',
        ],
      ];
      const content = h(
        'div',
        null,
        h(
          'p',
          { class: 'note' },
          h('strong', { text: 'Copy it now: ' }),
          'this is the only time the key is shown. Only its prefix ',
          h('code', { text: issued.key.masked }),
          ' is kept.'
        ),
        rows
          .filter((r) => r[2])
          .map(([label, id, text, buttonId, buttonText]) => {
            const code = h('code', { id, text, class: id === 'onetime-settings' ? 'pre' : null });
            const button = h('button', {
              type: 'button',
              id: buttonId,
              class: 'subtle',
              text: buttonText,
              'aria-describedby': id,
              onclick: () => copyText(text, code, button),
            });
            return [h('p', { class: 'secret-label', text: label }), h('div', { class: 'secret-row' }, code, button)];
          }),
        h(
          'div',
          { class: 'form-actions' },
          h('button', { type: 'button', id: 'onetime-close', text: 'I have stored it, close', onclick: () => dlg.close() })
        )
      );
      const dlg = openDialog({
        title,
        content,
        id: 'onetime-dialog',
        onClose: () => {
          clear(content);
          resolve();
        },
      });
      $('#copy-key', dlg).focus();
    });
  }

  function badge(text, kind) {
    return h('span', { class: `badge ${kind || ''}`, text });
  }

  const statusBadge = (s) => badge(s, s === 'active' ? 'ok' : 'bad');

  function circuitBadge(c) {
    if (!c) return badge('unknown');
    if (c.state === 'open') return badge('open', 'bad');
    if (c.state === 'half_open') return badge('half-open', 'warn');
    return badge('closed', 'ok');
  }

  function table({ caption, columns, rows, empty, id }) {
    if (!rows.length) return emptyEl(empty || 'Nothing to show.');
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id },
        caption ? h('caption', { text: caption }) : null,
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null, text: c.label }))
          )
        ),
        h(
          'tbody',
          null,
          rows.map((r) =>
            h(
              'tr',
              null,
              columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(r)))
            )
          )
        )
      )
    );
  }

  /** "N unpriced" under a cost whose total leaves requests out (their cost is unknown). */
  function unpricedNote(t) {
    return t.unpriced_requests ? `+ ${fmtInt(t.unpriced_requests)} unpriced requests (cost unknown)` : null;
  }

  function stat(label, value, sub, id, raw) {
    return h(
      'div',
      { class: 'stat' },
      h('dt', { text: label }),
      h('dd', { id, 'data-value': raw }, value, sub ? h('span', { class: 'sub', text: sub }) : null)
    );
  }

  function pageHead(title, actions, crumbs) {
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

  function panel(title, body, actions, id) {
    const headingId = nextId('h');
    return h(
      'section',
      { class: 'panel', 'aria-labelledby': headingId, id },
      h('div', { class: 'section-head' }, h('h2', { id: headingId, text: title }), actions ? h('div', { class: 'actions' }, actions) : null),
      body
    );
  }

  function userLink(id, users) {
    if (!id) return h('span', { class: 'muted', text: '(unrecognised key)' });
    const u = users && users.get(id);
    return h('a', { href: `#/users/${id}`, text: u ? u.name : id });
  }

  // ---------------------------------------------------------------------------------------
  // Time buckets and charts
  // ---------------------------------------------------------------------------------------

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
  function timeline(report) {
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

  const zeroCounts = () => ({
    requests: 0,
    errors: 0,
    fallbacks: 0,
    input_tokens: 0,
    output_tokens: 0,
    cache_read_tokens: 0,
    cache_creation_tokens: 0,
    cost: 0,
  });

  function addCounts(sum, row) {
    for (const k of Object.keys(sum)) if (k !== 'cost') sum[k] += row[k] || 0;
    sum.cost += Number(row.cost_usd) || 0;
  }

  /** Sums of a report's rows per bucket (and optionally per `split` value), over its whole timeline. */
  function perBucket(report, split) {
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
  function barChart({ title, labels, series, format, empty, id, height }) {
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

  const tokenSeries = (sums) => [
    { name: 'Input', values: sums.map((s) => s.input_tokens) },
    { name: 'Output', values: sums.map((s) => s.output_tokens) },
    { name: 'Cache read', values: sums.map((s) => s.cache_read_tokens) },
    { name: 'Cache write', values: sums.map((s) => s.cache_creation_tokens) },
  ];

  const PROVIDER_COLOR = { anthropic: 0, bedrock: 1, none: 5 };

  // ---------------------------------------------------------------------------------------
  // Router
  // ---------------------------------------------------------------------------------------

  const routes = [
    [/^\/?$/, viewOverview, 'overview'],
    [/^\/users\/?$/, viewUsers, 'users'],
    [/^\/users\/(usr_[0-9A-Za-z]+)$/, viewUser, 'users'],
    [/^\/usage\/?$/, viewUsage, 'usage'],
    [/^\/audit\/?$/, viewAudit, 'audit'],
    [/^\/requests\/?$/, viewRequests, 'requests'],
    [/^\/requests\/(req_[0-9A-Za-z]+)$/, viewRequests, 'requests'],
    [/^\/circuits\/?$/, viewCircuits, 'circuits'],
    [/^\/models\/?$/, viewModels, 'models'],
  ];

  function parseHash() {
    let raw = location.hash.replace(/^#/, '');
    try {
      raw = decodeURI(raw);
    } catch (_) {
      // Keep the raw text: the router shows "not found".
    }
    raw = raw || '/';
    const i = raw.indexOf('?');
    return { path: i < 0 ? raw : raw.slice(0, i), params: new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)) };
  }

  /** Puts view state into the address (for reload and sharing) without re-rendering. */
  function replaceQuery(path, query) {
    history.replaceState(null, '', `#${path}${queryString(query)}`);
  }

  function stopTimers() {
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
  }

  async function render() {
    stopTimers();
    closeAllDialogs();
    if (!state.admin) return;
    const { path, params } = parseHash();
    const gen = ++state.generation;
    const main = clear($('#main'));
    const route = routes.find((r) => r[0].test(path));
    for (const a of document.querySelectorAll('#nav a')) {
      if (route && a.dataset.nav === route[2]) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const ctx = { main, params, path, arg: route ? path.match(route[0])[1] : null, alive: () => gen === state.generation };
    const moved = state.lastPath !== path;
    state.lastPath = path;
    if (!route) {
      main.append(...pageHead('Page not found'), errorBox(new Error(`There is no page ${path}.`)));
      return;
    }
    const running = route[1](ctx);
    const heading = $('h1', main);
    document.title = heading ? `${heading.textContent} · ClaudeCodeProxy` : 'ClaudeCodeProxy';
    if (moved && heading) heading.focus();
    try {
      await running;
    } catch (e) {
      if (ctx.alive()) main.append(errorBox(e));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Login and session
  // ---------------------------------------------------------------------------------------

  function clearSession() {
    state.csrf = null;
    state.admin = null;
    state.generation++;
    sessionStorage.removeItem(CSRF_KEY);
    stopTimers();
  }

  function sessionEnded(message) {
    if (!state.admin) return;
    clearSession();
    closeAllDialogs();
    showLogin(`${message} Log in again.`);
  }

  function showLogin(message) {
    $('#topbar').hidden = true;
    document.title = 'Log in · ClaudeCodeProxy';
    const main = clear($('#main'));
    const errorArea = h('div', { 'aria-live': 'assertive' });
    const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false' });
    const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const submit = h('button', { type: 'submit', id: 'login-submit', text: 'Log in' });
    const form = h(
      'form',
      { id: 'login-form', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'login-username', text: 'Username' }), username),
      h('div', { class: 'field' }, h('label', { for: 'login-password', text: 'Password' }), password),
      errorArea,
      submit
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clear(errorArea);
      if (!username.value || !password.value) {
        errorArea.append(errorBox(new Error('Enter the username and the password.')));
        (username.value ? password : username).focus();
        return;
      }
      submit.disabled = true;
      const body = { username: username.value.trim(), password: password.value };
      password.value = '';
      try {
        const session = await api('POST', '/v1/auth/login', { body, noAuthRedirect: true });
        body.password = '';
        // Only the CSRF token is kept; the session itself lives in the HttpOnly cookie.
        state.csrf = session.csrf_token;
        sessionStorage.setItem(CSRF_KEY, state.csrf);
        state.admin = { username: session.admin.username, admin_id: session.admin.admin_id };
        startApp();
      } catch (e) {
        body.password = '';
        errorArea.append(errorBox(e));
        password.focus();
      } finally {
        submit.disabled = false;
      }
    });
    main.append(
      h(
        'section',
        { class: 'login panel', 'aria-labelledby': 'login-title' },
        h('h1', { id: 'login-title', tabindex: '-1' }, h('img', { src: '/dashboard/icon.svg', alt: '', width: 28, height: 28 }), 'ClaudeCodeProxy'),
        h('p', { class: 'muted', text: 'Log in to manage users, access keys, budgets and routing.' }),
        message ? h('p', { class: 'note', role: 'alert', text: message }) : null,
        form
      )
    );
    username.focus();
  }

  function startApp() {
    $('#topbar').hidden = false;
    $('#whoami').textContent = `Signed in as ${state.admin.username}`;
    state.lastPath = null;
    render();
  }

  async function logout() {
    try {
      await api('POST', '/v1/auth/logout', { noAuthRedirect: true });
    } catch (_) {
      // The session is forgotten here either way.
    }
    clearSession();
    history.replaceState(null, '', '#/');
    showLogin('You are logged out.');
  }

  // ---------------------------------------------------------------------------------------
  // Overview
  // ---------------------------------------------------------------------------------------

  function viewOverview(ctx) {
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

  /** The keys of some circuits (for their owners), by key id; a key that cannot be read is left out. */
  async function keysOf(circuits) {
    const keys = await Promise.all(circuits.map((c) => get(`/v1/keys/${c.key_id}`).catch(() => null)));
    return new Map(keys.filter(Boolean).map((k) => [k.key_id, k]));
  }

  function keyOwner(c, keys, users) {
    const k = keys.get(c.key_id);
    if (!k) return h('code', { class: 'small', text: c.key_id });
    return [userLink(k.user_id, users), ' ', h('code', { class: 'small', title: c.key_id, text: k.masked })];
  }

  function openCircuits(list, keys, users, after) {
    if (!list.length) return emptyEl('All circuits are closed: every key uses its Plan first.');
    return table({
      columns: [
        { label: 'Key', cell: (c) => keyOwner(c, keys, users) },
        { label: 'State', cell: (c) => circuitBadge(c) },
        { label: 'Since', cell: (c) => timeEl(c.since, fmtAgo(c.since)) },
        { label: '', cell: (c) => resetCircuitButton(c, after) },
      ],
      rows: list,
      id: 'overview-circuits',
    });
  }

  function resetCircuitButton(c, after) {
    if (c.state === 'closed') return null;
    return h('button', {
      type: 'button',
      class: 'subtle small',
      'data-action': 'reset-circuit',
      'data-key-id': c.key_id,
      text: 'Reset',
      onclick: async () => {
        const done = await formDialog({
          title: 'Reset the circuit',
          intro: `Close the circuit of ${c.key_id} now: every proxy replica sends its requests to Anthropic again (the breaker counts failures afresh).`,
          submitLabel: 'Reset circuit',
          onSubmit: () => send('POST', `/v1/keys/${c.key_id}/circuit/reset`),
        });
        if (done) {
          toast(`Circuit of ${c.key_id} is ${done.state}.`);
          after();
        }
      },
    });
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

  // ---------------------------------------------------------------------------------------
  // Users
  // ---------------------------------------------------------------------------------------

  const PAGE = 50;

  function viewUsers(ctx) {
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
    const newUser = h('button', { type: 'button', id: 'new-user', text: 'New user', onclick: () => createUser() });
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

  const routingOptions = () => Object.entries(ROUTING);

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

  // ---------------------------------------------------------------------------------------
  // One user
  // ---------------------------------------------------------------------------------------

  function viewUser(ctx) {
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
      { class: 'inline', id: 'routing-form' },
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
      { class: 'inline', id: 'budget-form' },
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

  async function keysTable(u, reload) {
    if (!u.keys.length) return emptyEl('No access keys yet: “Issue key” creates one.');
    const circuits = new Map(
      await Promise.all(
        u.keys
          .filter((k) => k.status === 'active')
          .map((k) => get(`/v1/keys/${k.key_id}/circuit`).then((c) => [k.key_id, c], () => [k.key_id, null]))
      )
    );
    return table({
      id: 'keys-table',
      columns: [
        {
          label: 'Key',
          cell: (k) => [h('code', { text: k.masked }), k.name ? h('div', { class: 'small muted', text: k.name }) : null],
        },
        { label: 'Status', cell: (k) => statusBadge(k.status) },
        { label: 'Created', cell: (k) => timeEl(k.created_at) },
        {
          label: 'Last used',
          cell: (k) => (k.last_used_at ? h('span', { class: 'last-used' }, timeEl(k.last_used_at, fmtAgo(k.last_used_at))) : h('span', { class: 'muted', text: 'never' })),
        },
        {
          label: 'Bedrock',
          cell: (k) => [
            k.bedrock_key ? badge('linked', 'ok') : badge('not linked'),
            k.bedrock_key ? readinessBadge(k.bedrock_key.readiness) : null,
            k.bedrock_key ? h('div', { class: 'small muted', text: `${k.bedrock_key.hint} · ${fmtTime(k.bedrock_key.updated_at)}` }) : null,
            h('div', { class: 'small muted', text: k.bedrock_region || 'default region' }),
          ],
        },
        { label: 'Circuit', cell: (k) => (k.status === 'active' ? [circuitBadge(circuits.get(k.key_id)), resetCircuitButton(circuits.get(k.key_id) || { state: 'closed' }, reload)] : '–') },
        { label: 'Actions', cell: (k) => keyActions(u, k, reload) },
      ],
      rows: u.keys,
    });
  }

  /** Whether a key's Bedrock API key can take a failover, as last checked. */
  function readinessBadge(r) {
    if (!r) return h('div', { class: 'small muted', text: 'failover not checked yet' });
    const failing = r.models.filter((m) => m.readiness !== 'ready').map((m) => m.model_id);
    const text = r.readiness === 'ready' ? 'failover ready' : `failover: ${r.readiness.replace(/_/g, ' ')}`;
    return h(
      'div',
      { class: 'readiness', 'data-readiness': r.readiness, title: `checked ${fmtTime(r.checked_at)} in ${r.region}${failing.length ? `; not answering: ${failing.join(', ')}` : ''}` },
      badge(text, r.readiness === 'ready' ? 'ok' : 'bad')
    );
  }

  function keyActions(u, k, reload) {
    if (k.status !== 'active') return h('span', { class: 'muted small', text: `revoked ${fmtTime(k.updated_at)}` });
    const label = k.name ? `${k.name} (${k.masked})` : k.masked;
    const button = (action, text, onclick, cls) =>
      h('button', { type: 'button', class: `${cls || 'subtle'} small`, 'data-action': action, 'data-key-id': k.key_id, text, 'aria-label': `${text}: ${label}`, onclick });
    return h(
      'div',
      { class: 'actions' },
      button('rotate', 'Rotate', async () => {
        const issued = await formDialog({
          title: `Rotate ${label}?`,
          intro: 'A new secret is issued and the current one is refused at once. The key id, Bedrock key and settings stay.',
          submitLabel: 'Rotate',
          danger: true,
          onSubmit: () => send('POST', `/v1/keys/${k.key_id}/rotate`),
        });
        if (issued) {
          await showIssuedKey(issued, 'Access key rotated');
          reload();
        }
      }),
      button(
        'revoke',
        'Revoke',
        async () => {
          const done = await formDialog({
            title: `Revoke ${label}?`,
            intro: 'The proxy refuses this key within a second, for good. This cannot be undone.',
            fields: [field({ label: 'Reason (for the audit log)', name: 'reason', type: 'textarea', attrs: { maxlength: 500 } })],
            submitLabel: 'Revoke key',
            danger: true,
            onSubmit: (form) => send('POST', `/v1/keys/${k.key_id}/revoke`, { reason: form.elements.reason.value.trim() || undefined }),
          });
          if (done) {
            toast(`${label} is revoked.`);
            reload();
          }
        },
        'danger'
      ),
      button('bedrock-key', k.bedrock_key ? 'Replace Bedrock key' : 'Register Bedrock key', async () => {
        const done = await formDialog({
          title: `${k.bedrock_key ? 'Replace' : 'Register'} the Bedrock API key of ${label}`,
          id: 'bedrock-key-dialog',
          intro: 'It is encrypted before it is stored and never shown again, here or anywhere.',
          fields: [
            field({
              label: 'Bedrock API key',
              name: 'api_key',
              id: 'bedrock-key-input',
              type: 'password',
              required: true,
              attrs: { autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off' },
            }),
          ],
          submitLabel: k.bedrock_key ? 'Replace' : 'Register',
          onSubmit: (form) => {
            const input = form.elements.api_key;
            const value = input.value.trim();
            input.value = '';
            return send('PUT', `/v1/keys/${k.key_id}/bedrock-key`, { api_key: value });
          },
        });
        if (done) {
          toast(`Bedrock API key of ${label} ${k.bedrock_key ? 'replaced' : 'registered'}.`);
          reload();
        }
      }),
      k.bedrock_key
        ? button('check-bedrock-key', 'Check failover', async () => {
            try {
              const checked = await send('POST', `/v1/keys/${k.key_id}/bedrock-key/check`);
              const r = checked.bedrock_key && checked.bedrock_key.readiness;
              toast(r && r.readiness === 'ready' ? `${label}: failover ready.` : `${label}: failover ${r ? r.readiness.replace(/_/g, ' ') : 'not checked'}.`);
            } catch (e) {
              toast(`${label}: the check failed (${e.message}).`);
            }
            reload();
          })
        : null,
      k.bedrock_key
        ? button('remove-bedrock-key', 'Remove Bedrock key', async () => {
            const done = await formDialog({
              title: `Remove the Bedrock API key of ${label}?`,
              intro: 'The key no longer fails over to Bedrock (and bedrock-only routing stops working for it).',
              submitLabel: 'Remove',
              danger: true,
              onSubmit: () => send('DELETE', `/v1/keys/${k.key_id}/bedrock-key`),
            });
            if (done) {
              toast(`Bedrock API key of ${label} removed.`);
              reload();
            }
          })
        : null,
      button('bedrock-settings', 'Bedrock settings', async () => {
        const done = await formDialog({
          title: `Bedrock settings of ${label}`,
          fields: [
            field({ label: 'Region', name: 'region', value: k.bedrock_region || '', hint: 'Empty: the proxy’s default.', attrs: { autocomplete: 'off' } }),
            field({ label: 'Default model', name: 'default_model', value: k.bedrock_default_model || '', hint: 'Bedrock model id used when the requested model maps to nothing.', attrs: { autocomplete: 'off' } }),
          ],
          submitLabel: 'Save',
          onSubmit: (form) => {
            const v = (n) => form.elements[n].value.trim() || null;
            return send('PUT', `/v1/keys/${k.key_id}/bedrock`, { region: v('region'), default_model: v('default_model') });
          },
        });
        if (done) {
          toast(`Bedrock settings of ${label} saved.`);
          reload();
        }
      })
    );
  }

  // ---------------------------------------------------------------------------------------
  // Usage
  // ---------------------------------------------------------------------------------------

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
  function zonedToUtc(local, tz) {
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

  function viewUsage(ctx) {
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
        return usageResults(r, q, users);
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
        for (const u of [...users.values()].sort((a, b) => a.name.localeCompare(b.name))) user.append(h('option', { value: u.user_id, text: u.name }));
        user.value = q.user_id;
        await loadKeys();
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 401)) toast(`Users could not be loaded: ${e.message}`, true);
      }
      if (ctx.alive()) await show();
    })();
  }

  function usageResults(r, q, users) {
    const t = r.totals;
    const groupCol = q.group === 'user' ? 'user_id' : q.group === 'key' ? 'key_id' : q.group || null;
    const p = perBucket(r);
    const rows = r.rows.slice(-1000).reverse();
    const groupCell = (row) => {
      if (groupCol === 'user_id') return userLink(row.user_id, users);
      if (groupCol === 'key_id') return row.key_id ? h('code', { text: row.key_id }) : h('span', { class: 'muted', text: '(none)' });
      if (groupCol === 'provider') return PROVIDERS[row.provider] || row.provider;
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

  function csvCell(v) {
    let s = v === null || v === undefined ? '' : String(v);
    // Spreadsheets run cells starting with these as formulas.
    if (/^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s)) s = `'${s}`;
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function toCsv(report, users) {
    const dims = report.group_by;
    const header = ['bucket_start', 'time_zone'];
    for (const d of dims) {
      if (d === 'user') header.push('user_id', 'user_name');
      else if (d === 'key') header.push('key_id');
      else header.push(d);
    }
    const measures = ['requests', 'errors', 'fallbacks', 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_creation_tokens', 'cost_usd'];
    header.push(...measures);
    const lines = [header.join(',')];
    for (const r of report.rows) {
      const cells = [r.bucket_start, report.tz];
      for (const d of dims) {
        if (d === 'user') cells.push(r.user_id, (users.get(r.user_id) || {}).name || '');
        else if (d === 'key') cells.push(r.key_id);
        else cells.push(r[d]);
      }
      for (const m of measures) cells.push(r[m]);
      lines.push(cells.map(csvCell).join(','));
    }
    return `${lines.join('\r\n')}\r\n`;
  }

  function exportCsv(report, users) {
    const blob = new Blob([toCsv(report, users)], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const name = `ccp-usage-${report.from.slice(0, 16).replace(/[:T]/g, '')}-${report.to.slice(0, 16).replace(/[:T]/g, '')}.csv`;
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    toast(`Exported ${report.rows.length} rows to ${name}.`);
  }

  // ---------------------------------------------------------------------------------------
  // Audit log
  // ---------------------------------------------------------------------------------------

  const EVENT_TYPES = [
    'user_created', 'user_updated', 'user_deactivated', 'user_reactivated', 'budget_set', 'routing_strategy_set',
    'access_key_issued', 'access_key_revoked', 'access_key_rotated', 'bedrock_settings_changed',
    'bedrock_api_key_registered', 'bedrock_api_key_rotated', 'bedrock_api_key_removed', 'pricing_set',
    'admin_created', 'admin_login_succeeded', 'admin_login_failed', 'api_token_issued', 'api_token_revoked',
  ];

  function auditTable(items, users, compact) {
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

  function viewAudit(ctx) {
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

  // ---------------------------------------------------------------------------------------
  // Request lookup
  // ---------------------------------------------------------------------------------------

  function viewRequests(ctx) {
    const input = h('input', { id: 'request-id', name: 'request_id', value: ctx.arg || '', placeholder: 'req_…', required: true, pattern: 'req_[0-9A-Za-z]{26}', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'request-id-hint' });
    const result = h('div', { id: 'request-result' });
    const form = h(
      'form',
      { class: 'filters', id: 'request-form' },
      h('div', { class: 'field' }, h('label', { for: 'request-id', text: 'Request id' }), input, h('span', { class: 'hint', id: 'request-id-hint', text: 'The x-ccp-request-id header a developer saw. Requests appear about a second after they end.' })),
      h('button', { type: 'submit', text: 'Look up' })
    );
    ctx.main.append(...pageHead('Request lookup'), h('div', { class: 'panel' }, form), result);
    const lookup = (id) =>
      load(result, ctx, async () => {
        const r = await get(`/v1/requests/${encodeURIComponent(id)}`);
        const users = await usersById().catch(() => new Map());
        const rows = [
          ['Request id', h('code', { text: r.request_id })],
          ['When', timeEl(r.occurred_at)],
          ['User', r.user_id ? userLink(r.user_id, users) : '–'],
          ['Key', r.key_id ? [h('code', { text: r.key_id }), r.key_prefix ? ` (${r.key_prefix}…)` : ''] : r.key_prefix ? `${r.key_prefix}… (not recognised)` : '–'],
          ['Status', [String(r.status), ' ', r.error_class ? badge(r.error_class, 'bad') : badge('ok', 'ok')]],
          ['Provider', [PROVIDERS[r.provider] || r.provider, r.fallback ? [' ', badge(`fallback: ${r.fallback_reason || 'yes'}`, 'warn')] : null]],
          ['Endpoint', r.endpoint],
          ['Model', [r.requested_model || '–', r.response_model && r.response_model !== r.requested_model ? ` → ${r.response_model}` : '', r.bedrock_model_id ? ` (Bedrock ${r.bedrock_model_id}${r.region ? `, ${r.region}` : ''})` : '']],
          ['Stream', r.stream ? `yes${r.incomplete ? ' (incomplete)' : ''}` : 'no'],
          ['Stop reason', r.stop_reason || '–'],
          ['Tokens', [`${fmtInt(r.input_tokens)} in · ${fmtInt(r.output_tokens)} out · ${fmtInt(r.cache_read_tokens)} cache read · ${fmtInt(r.cache_creation_tokens)} cache write`, r.usage_estimated ? [' ', badge('output estimated', 'warn')] : null]],
          ['Cost', r.unpriced ? [badge('unpriced', 'warn'), ` no price for ${r.priced_model || 'this model'}: cost unknown`] : `${fmtUsd(r.cost_usd)} (price list v${r.pricing_version}${r.priced_model ? `, as ${r.priced_model}` : ''})`],
          ['Bedrock model from', r.bedrock_resolution ? [r.bedrock_resolution.replace('_', ' '), r.model_substituted ? [' ', badge('substituted', 'warn')] : null] : '–'],
          ['Latency', `${fmtInt(r.latency_ms)} ms total · ${fmtInt(r.ttfb_ms)} ms to first byte`],
          ['Client', r.client_version || '–'],
          ['Session', r.session_id || '–'],
          ['Proxy replica', r.replica || '–'],
        ];
        return panel('Request', h('dl', { class: 'kv', id: 'request-detail' }, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', null, v)])));
      });
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const id = input.value.trim();
      if (!/^req_[0-9A-Za-z]{26}$/.test(id)) {
        input.setAttribute('aria-invalid', 'true');
        clear(result).append(errorBox(new Error('A request id looks like req_ followed by 26 letters and digits.')));
        input.focus();
        return;
      }
      input.removeAttribute('aria-invalid');
      replaceQuery(`/requests/${id}`, {});
      lookup(id);
    });
    if (ctx.arg) return lookup(ctx.arg);
    result.append(emptyEl('Enter a request id to see what happened to it.'));
    return Promise.resolve();
  }

  // ---------------------------------------------------------------------------------------
  // Circuits
  // ---------------------------------------------------------------------------------------

  function viewCircuits(ctx) {
    const list = h('div');
    const lookupResult = h('div', { id: 'circuit-result' });
    const input = h('input', { id: 'circuit-key', name: 'key_id', placeholder: 'key_…', required: true, autocomplete: 'off', spellcheck: 'false' });
    const form = h('form', { class: 'filters', id: 'circuit-form' }, h('div', { class: 'field' }, h('label', { for: 'circuit-key', text: 'Access key id' }), input), h('button', { type: 'submit', text: 'Show circuit' }));
    ctx.main.append(
      ...pageHead('Circuits'),
      h('p', { class: 'muted', text: 'Each access key has a circuit breaker: after repeated Anthropic failures it opens and requests go straight to Bedrock until a probe succeeds. Resetting closes it at once on every proxy replica.' }),
      panel('Open and half-open circuits', list),
      panel('One key', [form, lookupResult])
    );
    const refresh = () =>
      load(list, ctx, async () => {
        const circuits = await get('/v1/circuits');
        if (!circuits.length) return emptyEl('All circuits are closed: every key uses its Plan first.');
        const [keys, users] = await Promise.all([keysOf(circuits), usersById().catch(() => new Map())]);
        return table({
          id: 'circuits-table',
          columns: [
            { label: 'Key', cell: (c) => [keyOwner(c, keys, users), h('div', { class: 'small muted', text: c.key_id })] },
            { label: 'State', cell: circuitBadge },
            { label: 'Since', cell: (c) => timeEl(c.since) },
            { label: 'Reason', cell: (c) => c.reason || '–' },
            { label: 'Failures', num: true, cell: (c) => fmtInt(c.failures) },
            { label: 'Next probe', cell: (c) => timeEl(c.retry_at) },
            { label: '', cell: (c) => resetCircuitButton(c, refresh) },
          ],
          rows: circuits,
        });
      });
    const lookup = (id) =>
      load(lookupResult, ctx, async () => {
        const c = await get(`/v1/keys/${encodeURIComponent(id)}/circuit`);
        return h(
          'dl',
          { class: 'kv' },
          h('dt', { text: 'State' }),
          h('dd', null, circuitBadge(c), ' ', resetCircuitButton(c, () => { refresh(); lookup(id); })),
          h('dt', { text: 'Since' }),
          h('dd', null, c.since ? timeEl(c.since) : 'never tripped'),
          h('dt', { text: 'Reason' }),
          h('dd', { text: c.reason || c.cause || '–' }),
          h('dt', { text: 'Failures' }),
          h('dd', { text: fmtInt(c.failures) }),
          h('dt', { text: 'Next probe' }),
          h('dd', null, timeEl(c.retry_at))
        );
      });
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (input.value.trim()) lookup(input.value.trim());
    });
    return refresh();
  }

  // ---------------------------------------------------------------------------------------
  // Models: the catalogue (names, family, Bedrock targets) and each model's prices
  // ---------------------------------------------------------------------------------------

  const priceText = (p) => {
    const scope = [p.provider, p.region].filter(Boolean).join(' @ ');
    return `${scope ? `${scope}: ` : ''}$${p.input_per_mtok} in / $${p.output_per_mtok} out`;
  };

  /** `IN/OUT/CACHE_WRITE/CACHE_READ` (USD per million tokens) → a price, or an Error naming the line. */
  function parsePriceLine(line) {
    const parts = line.split('/').map((s) => s.trim());
    if (parts.length !== 4 || parts.some((s) => !/^\d{1,5}(\.\d{1,6})?$/.test(s))) {
      throw new Error(`Price "${line}": write IN/OUT/CACHE_WRITE/CACHE_READ in USD per million tokens, e.g. 5/25/6.25/0.50.`);
    }
    const [input, output, write, read] = parts;
    return { input_per_mtok: input, output_per_mtok: output, cache_write_per_mtok: write, cache_read_per_mtok: read };
  }

  async function editModel(model, after) {
    const targets = (model && model.bedrock) || [];
    const general = model && model.prices.find((p) => !p.provider && !p.region);
    const saved = await formDialog({
      title: model ? `Model ${model.id}` : 'New model',
      id: 'model-dialog',
      intro: 'Every proxy uses the change within a second. Requests of a model without a price are recorded as unpriced (cost unknown), never $0.',
      submitLabel: 'Save model',
      fields: [
        field({ label: 'Model id', name: 'id', id: 'model-id', required: true, value: model ? model.id : '', hint: 'The Anthropic model id, e.g. claude-opus-5-5; dated names match it too.', attrs: Object.assign({ pattern: '[a-z][a-z0-9.\\-]{0,63}', autocomplete: 'off', spellcheck: 'false' }, model ? { readonly: true } : {}) }),
        field({ label: 'Family', name: 'family', id: 'model-family', options: [['opus', 'Opus'], ['sonnet', 'Sonnet'], ['haiku', 'Haiku']], value: model ? model.family : 'opus' }),
        field({ label: 'Aliases', name: 'aliases', id: 'model-aliases', value: model ? model.aliases.join(', ') : '', hint: 'Other names it answers to, comma-separated.', attrs: { autocomplete: 'off', spellcheck: 'false' } }),
        field({ label: 'Bedrock targets', name: 'bedrock', id: 'model-bedrock', type: 'textarea', value: targets.map((t) => `${t.scope}=${t.model_id}`).join('\n'), hint: 'One SCOPE=MODEL_ID a line; scope a region, us/eu/apac/jp/au/ca/us-gov, global or *. Empty: the key’s own Bedrock model list, then the family’s fallback.' }),
        field({ label: 'Price (both providers)', name: 'price', id: 'model-price', value: general ? `${general.input_per_mtok}/${general.output_per_mtok}/${general.cache_write_per_mtok}/${general.cache_read_per_mtok}` : '', hint: 'IN/OUT/CACHE_WRITE/CACHE_READ in USD per million tokens, e.g. 5/25/6.25/0.50. Empty: leave the prices as they are.', attrs: { autocomplete: 'off' } }),
      ],
      onSubmit: (form) => {
        const v = (n) => form.elements[n].value.trim();
        const bedrock = v('bedrock')
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
          .map((l) => {
            const i = l.indexOf('=');
            if (i < 1) throw new Error(`Bedrock target "${l}": write SCOPE=MODEL_ID, e.g. global=global.anthropic.claude-opus-5-5-v1:0.`);
            return { scope: l.slice(0, i).trim(), model_id: l.slice(i + 1).trim() };
          });
        const body = { family: v('family'), aliases: v('aliases').split(',').map((a) => a.trim()).filter(Boolean), bedrock };
        if (v('price')) {
          const keep = model ? model.prices.filter((p) => p.provider || p.region) : [];
          body.prices = [parsePriceLine(v('price'))].concat(keep.map((p) => ({ provider: p.provider, region: p.region, input_per_mtok: p.input_per_mtok, output_per_mtok: p.output_per_mtok, cache_write_per_mtok: p.cache_write_per_mtok, cache_read_per_mtok: p.cache_read_per_mtok })));
        }
        return send('PUT', `/v1/models/${encodeURIComponent(v('id'))}`, body);
      },
    });
    if (saved) {
      toast(`Model ${saved.id} saved${saved.priced ? '' : ' (unpriced)'}.`);
      after();
    }
  }

  function viewModels(ctx) {
    const list = h('div');
    const refresh = () =>
      load(list, ctx, async () => {
        const catalogue = await get('/v1/models');
        const unpriced = catalogue.models.filter((m) => !m.priced).length;
        return [
          h('p', { class: 'muted small', id: 'models-summary', text: `Catalogue version ${catalogue.version} · price list version ${catalogue.pricing_version} · ${catalogue.models.length} models${unpriced ? ` · ${unpriced} unpriced` : ''}` }),
          table({
            id: 'models-table',
            columns: [
              { label: 'Model', cell: (m) => [h('code', { text: m.id }), m.aliases.length ? h('div', { class: 'small muted', text: m.aliases.join(', ') }) : null] },
              { label: 'Family', cell: (m) => m.family },
              { label: 'Bedrock', cell: (m) => (m.bedrock.length ? m.bedrock.map((t) => h('div', { class: 'small' }, `${t.scope}: `, h('code', { text: t.model_id }))) : h('span', { class: 'muted small', text: 'from the key’s Bedrock model list' })) },
              { label: 'Price per MTok', cell: (m) => (m.priced ? m.prices.map((p) => h('div', { class: 'small', text: priceText(p) })) : badge('unpriced', 'warn')) },
              { label: '', cell: (m) => h('button', { type: 'button', class: 'subtle small', 'data-action': 'edit-model', 'data-model': m.id, text: 'Edit', onclick: () => editModel(m, refresh) }) },
            ],
            rows: catalogue.models,
          }),
        ];
      });
    ctx.main.append(
      ...pageHead('Models', [h('button', { type: 'button', id: 'new-model', text: 'New model', onclick: () => editModel(null, refresh) })]),
      h('p', { class: 'muted', text: 'What each Claude model name means for failover and cost. A failover calls the catalogue’s Bedrock target for the key’s region, else the model in the key’s own Bedrock model list, else the newest model of the same family (recorded as a substitution).' }),
      panel('Catalogue', list)
    );
    return refresh();
  }

  // ---------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------

  async function boot() {
    $('#logout').addEventListener('click', logout);
    window.addEventListener('hashchange', () => {
      if (state.admin) render();
    });
    if (!state.csrf) {
      showLogin();
      return;
    }
    try {
      const me = await api('GET', '/v1/auth/me', { noAuthRedirect: true });
      if (me.method !== 'cookie') throw new ApiError(401, null, 'not a cookie session');
      state.admin = { username: me.username, admin_id: me.admin_id };
      startApp();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        clearSession();
        showLogin();
      } else {
        clear($('#main')).append(errorBox(e, () => location.reload()));
      }
    }
  }

  // Exposed for tests and the curious: pure helpers only, nothing holding data.
  window.ccpDashboard = Object.freeze({ toCsv, timeline, zonedToUtc });

  boot();
})();
