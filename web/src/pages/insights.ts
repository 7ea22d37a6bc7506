// Insights over Plait's own history (`/api/v1/insights/...`): the time windows of the
// page, times relative to now, and an anomaly as a sentence ("3.4× slower than usual").
// The run page uses this too, so it stays free of the YAML library (the suggestions'
// YAML is written in Insights.tsx).
import type { Anomaly, RunAnomaly } from '../api';
import { fmtDuration } from '../util';

/** The windows the page offers, in hours; `7d` when the address names none. */
export const WINDOWS: { key: string; label: string; hours: number }[] = [
  { key: '24h', label: 'last 24 hours', hours: 24 },
  { key: '7d', label: 'last 7 days', hours: 24 * 7 },
  { key: '30d', label: 'last 30 days', hours: 24 * 30 },
];
export const DEFAULT_WINDOW = '7d';

/** The ISO time a window starts at, seen from `now` (ms); an unknown key means the default. */
export function sinceFor(key: string, now: number): string {
  const w = WINDOWS.find((x) => x.key === key) ?? WINDOWS.find((x) => x.key === DEFAULT_WINDOW)!;
  // whole minutes, so a re-render in the same minute asks the same URL
  const start = Math.floor((now - w.hours * 3_600_000) / 60_000) * 60_000;
  return new Date(start).toISOString();
}

export function windowLabel(key: string): string {
  return (WINDOWS.find((x) => x.key === key) ?? WINDOWS.find((x) => x.key === DEFAULT_WINDOW)!).label;
}

/** `iso` relative to `now` (ms): `just now`, `5 min ago`, `3 h ago`, `2 days ago`, `in 4 min`. */
export function relativeTime(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  const ahead = s < 0;
  const a = Math.abs(s);
  if (a < 45) return 'just now';
  const [n, unit] =
    a < 3_600 ? [Math.max(1, Math.round(a / 60)), 'min'] : a < 86_400 ? [Math.round(a / 3_600), 'h'] : [Math.round(a / 86_400), Math.round(a / 86_400) === 1 ? 'day' : 'days'];
  return ahead ? `in ${n} ${unit}` : `${n} ${unit} ago`;
}

/** How many times slower (or faster) than the median: `3.4`, `12`; null when not comparable. */
export function ratio(a: Pick<RunAnomaly, 'duration' | 'median' | 'direction'>): number | null {
  const [big, small] = a.direction === 'fast' ? [a.median, a.duration] : [a.duration, a.median];
  if (!(small > 0) || !(big >= 0)) return null;
  const r = big / small;
  return r >= 10 ? Math.round(r) : Math.round(r * 10) / 10;
}

/** `3.4× slower than usual (median 12.0 s)`; `much slower than usual` when the median is 0. */
export function anomalyText(a: Pick<RunAnomaly, 'duration' | 'median' | 'direction'>): string {
  const r = ratio(a);
  const how = a.direction === 'fast' ? 'faster' : 'slower';
  return `${r === null ? 'much' : `${r}×`} ${how} than usual (median ${fmtDuration(a.median)})`;
}

/** The numbers behind an anomaly, for a tooltip. */
export function anomalyDetail(a: RunAnomaly | Anomaly): string {
  const parts = [`took ${fmtDuration(a.duration)}`, `median ${fmtDuration(a.median)}`];
  if ('mad' in a) parts.push(`MAD ${fmtDuration(a.mad)}`);
  parts.push(`robust z-score ${a.score.toFixed(1)}`);
  return parts.join(' · ');
}

/** The run page's link for one step of a run. */
export function runStepLink(runId: string, step: string | null): string {
  const base = `/runs/${encodeURIComponent(runId)}`;
  return step ? `${base}?step=${encodeURIComponent(step)}` : base;
}
