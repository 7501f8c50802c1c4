// The models page: the catalogue (names, family, Bedrock targets) and each model's prices.

import { get, send } from './api.js';
import { field, formDialog } from './dialogs.js';
import { load, pageHead, panel, toast } from './ui.js';
import { h } from '../shared/dom.js';
import { badge, table } from '../shared/widgets.js';

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

export function viewModels(ctx) {
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
            { label: '', cell: (m) => h('button', { type: 'button', class: 'subtle small', 'data-action': 'edit-model', 'data-model': m.id, 'data-needs': 'operator', text: 'Edit', onclick: () => editModel(m, refresh) }) },
          ],
          rows: catalogue.models,
        }),
      ];
    });
  ctx.main.append(
    ...pageHead('Models', [h('button', { type: 'button', id: 'new-model', 'data-needs': 'operator', text: 'New model', onclick: () => editModel(null, refresh) })]),
    h('p', { class: 'muted', text: 'What each Claude model name means for failover and cost. A failover calls the catalogue’s Bedrock target for the key’s region, else the model in the key’s own Bedrock model list, else the newest model of the same family (recorded as a substitution).' }),
    panel('Catalogue', list)
  );
  return refresh();
}
