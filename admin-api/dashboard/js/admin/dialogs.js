// Modal dialogs and forms in them: focus handling, labelled fields, the API's error shown in the
// dialog with the offending field marked, and copying to the clipboard.

import { errorBox, toast } from './ui.js';
import { $, clear, h, nextId } from '../shared/dom.js';

/** A modal dialog: focus moves into it, Escape closes it, focus returns to the opener after. */
export function openDialog({ title, content, onClose, id }) {
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

export function closeAllDialogs() {
  for (const d of document.querySelectorAll('dialog')) d.close();
}

/** A labelled form control; `options` makes a select. */
export function field({ label, name, id, type, value, required, hint, options, attrs }) {
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
export function formDialog({ title, intro, fields, submitLabel, danger, onSubmit, id }) {
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

export async function copyText(text, source, button) {
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
