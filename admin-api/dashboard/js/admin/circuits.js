// Circuit breakers: the circuits page, the list of open circuits (also on the overview) and the
// reset button (also on a user's keys).

import { get, send, usersById } from './api.js';
import { formDialog } from './dialogs.js';
import { fmtAgo, timeEl } from './time.js';
import { circuitBadge, load, pageHead, panel, toast, userLink } from './ui.js';
import { h } from '../shared/dom.js';
import { fmtInt } from '../shared/format.js';
import { emptyEl, table } from '../shared/widgets.js';

/** The keys of some circuits (for their owners), by key id; a key that cannot be read is left out. */
export async function keysOf(circuits) {
  const keys = await Promise.all(circuits.map((c) => get(`/v1/keys/${c.key_id}`).catch(() => null)));
  return new Map(keys.filter(Boolean).map((k) => [k.key_id, k]));
}

function keyOwner(c, keys, users) {
  const k = keys.get(c.key_id);
  if (!k) return h('code', { class: 'small', text: c.key_id });
  return [userLink(k.user_id, users), ' ', h('code', { class: 'small', title: c.key_id, text: k.masked })];
}

export function openCircuits(list, keys, users, after) {
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

export function resetCircuitButton(c, after) {
  if (c.state === 'closed') return null;
  return h('button', {
    type: 'button',
    class: 'subtle small',
    'data-action': 'reset-circuit',
    'data-needs': 'operator',
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

export function viewCircuits(ctx) {
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
