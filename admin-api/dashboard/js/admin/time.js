// Dates and times in the time zone chosen on the dashboard (`state.tz`).

import { state } from './state.js';
import { h } from '../shared/dom.js';

function dateFormatter(options) {
  try {
    return new Intl.DateTimeFormat('en-GB', Object.assign({ timeZone: state.tz }, options));
  } catch (_) {
    return new Intl.DateTimeFormat('en-GB', options);
  }
}

export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return dateFormatter({ dateStyle: 'medium', timeStyle: 'short' }).format(d);
}

export function fmtAgo(iso) {
  if (!iso) return 'never';
  const secs = (Date.now() - new Date(iso).getTime()) / 1000;
  if (secs < 60) return 'just now';
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return fmtTime(iso);
}

export const timeEl = (iso, text) => (iso ? h('time', { datetime: iso, title: iso, text: text || fmtTime(iso) }) : '–');
