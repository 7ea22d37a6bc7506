// Log search results: the API's hit, and a line cut into plain and matched parts.

export interface LogHit {
  id: number;
  run_id: string;
  workflow: string;
  namespace: string;
  step: string | null;
  attempt: number;
  stream: string;
  at: string;
  line: string;
  /** `[start, end)` offsets of the matches, in characters (code points, as Python counts). */
  highlight: [number, number][];
}

export interface Part {
  text: string;
  match: boolean;
}

/**
 * `line` cut at the server's match ranges. The ranges count characters as Python does
 * (code points); JavaScript strings count UTF-16 units, so an emoji before a match would
 * shift it by one: the line is split into code points first. Overlapping, unordered or
 * out-of-range ranges are merged and clipped rather than trusted.
 */
export function highlightParts(line: string, ranges: [number, number][]): Part[] {
  const chars = Array.from(line);
  const spans = ranges
    .map(([a, b]) => [Math.max(0, Math.min(a, chars.length)), Math.max(0, Math.min(b, chars.length))] as [number, number])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  const merged: [number, number][] = [];
  for (const s of spans) {
    const last = merged[merged.length - 1];
    if (last && s[0] <= last[1]) last[1] = Math.max(last[1], s[1]);
    else merged.push([s[0], s[1]]);
  }
  const parts: Part[] = [];
  let at = 0;
  for (const [a, b] of merged) {
    if (a > at) parts.push({ text: chars.slice(at, a).join(''), match: false });
    parts.push({ text: chars.slice(a, b).join(''), match: true });
    at = b;
  }
  if (at < chars.length || !parts.length) parts.push({ text: chars.slice(at).join(''), match: false });
  return parts;
}

/** The run page of a hit, opened on its step with the line marked. */
export function hitLink(hit: LogHit): string {
  const q = new URLSearchParams();
  if (hit.step) q.set('step', hit.step);
  q.set('line', String(hit.id));
  return `/runs/${encodeURIComponent(hit.run_id)}?${q.toString()}`;
}
