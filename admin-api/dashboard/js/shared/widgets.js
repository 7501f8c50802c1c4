// Small building blocks both pages show: badges, empty states, stats and tables.

import { h } from './dom.js';

export const emptyEl = (text) => h('div', { class: 'empty', text });

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}`, text });
}

export function table({ caption, columns, rows, empty, id }) {
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

export function stat(label, value, sub, id, raw) {
  return h(
    'div',
    { class: 'stat' },
    h('dt', { text: label }),
    h('dd', { id, 'data-value': raw }, value, sub ? h('span', { class: 'sub', text: sub }) : null)
  );
}
