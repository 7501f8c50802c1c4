// A usage report as CSV (safe against spreadsheet formulas), downloaded from the page.

import { toast } from './ui.js';
import { h } from '../shared/dom.js';

function csvCell(v) {
  let s = v === null || v === undefined ? '' : String(v);
  // Spreadsheets run cells starting with these as formulas.
  if (/^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(report, users) {
  const dims = report.group_by;
  const header = ['bucket_start', 'time_zone'];
  for (const d of dims) {
    if (d === 'user') header.push('user_id', 'user_name');
    else if (d === 'key') header.push('key_id');
    else if (d === 'team') header.push('team_id');
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
      else if (d === 'team') cells.push(r.team_id);
      else cells.push(r[d]);
    }
    for (const m of measures) cells.push(r[m]);
    lines.push(cells.map(csvCell).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

export function exportCsv(report, users) {
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
