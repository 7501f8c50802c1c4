// A user's access keys: the table, their actions (rotate, revoke, Bedrock key and settings,
// failover check) and the one-time dialog that shows a newly issued key.

import { get, send } from './api.js';
import { resetCircuitButton } from './circuits.js';
import { copyText, field, formDialog, openDialog } from './dialogs.js';
import { fmtAgo, fmtTime, timeEl } from './time.js';
import { circuitBadge, statusBadge, toast } from './ui.js';
import { $, clear, h } from '../shared/dom.js';
import { badge, emptyEl, table } from '../shared/widgets.js';

/** The one place an access key is shown: a dialog whose content is removed when it closes. */
export function showIssuedKey(issued, title) {
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

export async function keysTable(u, reload) {
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
    h('button', { type: 'button', class: `${cls || 'subtle'} small`, 'data-action': action, 'data-key-id': k.key_id, 'data-needs': 'operator', text, 'aria-label': `${text}: ${label}`, onclick });
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
