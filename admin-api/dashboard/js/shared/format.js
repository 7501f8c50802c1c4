// Counts, token numbers, percentages and dollars as the pages write them (en-US grouping).

const intFmt = new Intl.NumberFormat('en-US');
const compactFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
export const pad = (n) => String(n).padStart(2, '0');
export const fmtInt = (n) => intFmt.format(Number(n) || 0);
export const fmtTokens = (n) => (Math.abs(n) >= 100000 ? compactFmt.format(n) : intFmt.format(n));
export function fmtPct(x) {
  if (!Number.isFinite(x)) return '–';
  if (x > 0 && x < 0.0001) return '<0.01%';
  return `${(x * 100).toFixed(x > 0 && x < 0.001 ? 2 : 1)}%`;
}

export function fmtUsd(value) {
  const n = Number(value) || 0;
  if (n === 0) return '$0.00';
  if (Math.abs(n) < 0.01) return `$${n.toFixed(4)}`;
  return `$${n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

export const fmtUsdShort = (n) => (n >= 1000 ? `$${compactFmt.format(n)}` : fmtUsd(n));
