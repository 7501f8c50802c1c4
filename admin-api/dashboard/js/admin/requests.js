// The request lookup page: what happened to one request, by its id.

import { get, usersById } from './api.js';
import { PROVIDERS } from './labels.js';
import { timeEl } from './time.js';
import { errorBox, load, pageHead, panel, replaceQuery, userLink } from './ui.js';
import { clear, h } from '../shared/dom.js';
import { fmtInt, fmtUsd } from '../shared/format.js';
import { badge, emptyEl } from '../shared/widgets.js';

export function viewRequests(ctx) {
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
