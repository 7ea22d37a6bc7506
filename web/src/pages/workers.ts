// The worker registry (`GET /api/v1/workers`): shapes and how late a heartbeat is.

export interface Worker {
  id: string;
  host: string;
  pid: number;
  state: 'running' | 'draining' | 'stopped' | 'lost';
  queues: string[];
  tags: Record<string, string>;
  running: number;
  concurrency: number;
  load: number;
  heartbeat_at: string;
  heartbeat_age: number;
  started_at: string;
  stopped_at: string | null;
  version: string;
}

/** Workers beat every 10 s and count as lost after 30 s (docs/cluster.md). */
export const BEAT_EVERY = 10;
export const LOST_AFTER = 30;

/**
 * How fresh a worker's heartbeat is: `ok`; `late` once two beats are missed (it may be
 * about to be lost); `lost` as the server says; `gone` for a worker that stopped.
 */
export function heartbeatHealth(w: Pick<Worker, 'state' | 'heartbeat_age'>): 'ok' | 'late' | 'lost' | 'gone' {
  if (w.state === 'stopped') return 'gone';
  if (w.state === 'lost' || w.heartbeat_age >= LOST_AFTER) return 'lost';
  return w.heartbeat_age >= 2 * BEAT_EVERY ? 'late' : 'ok';
}

/** An age in seconds as `4 s`, `3 m 20 s`, `2 h 5 m`, `3 d 4 h`. */
export function fmtAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} m`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
