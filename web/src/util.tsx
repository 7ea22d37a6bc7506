import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiError } from './api';

export function useApi<T>(path: string | null, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const seq = useRef(0);
  const load = useCallback(async () => {
    if (!path) return;
    const mine = ++seq.current;
    setLoading(true);
    try {
      const d = await api<T>(path);
      if (mine === seq.current) {
        setData(d);
        setError(null);
      }
    } catch (e) {
      if (mine === seq.current) setError(errorText(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, ...deps]);
  useEffect(() => {
    void load();
  }, [load]);
  return { data, error, loading, reload: load, setData };
}

/** `reload` every `ms` while the tab is visible (live lists: alerts, workers). */
export function usePoll(reload: () => unknown, ms: number) {
  useEffect(() => {
    const id = window.setInterval(() => {
      if (document.visibilityState !== 'hidden') void reload();
    }, ms);
    return () => window.clearInterval(id);
  }, [reload, ms]);
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    const details = Array.isArray(e.details)
      ? e.details
          .map((d) => (typeof d === 'object' && d && 'message' in d ? String((d as { message: unknown }).message) : ''))
          .filter(Boolean)
      : [];
    return details.length ? `${e.message}: ${details.join('; ')}` : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

export function StatusBadge({ status }: { status: string | null | undefined }) {
  const s = status ?? 'none';
  return <span className={`badge status-${s}`}>{s.replace('_', ' ')}</span>;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function fmtDuration(sec: number | null | undefined): string {
  if (sec == null) return '—';
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  return m < 60 ? `${m} m ${Math.round(sec % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} m`;
}

export function ErrorBox({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <div className="error" role="alert">
      {error}
    </div>
  );
}

export const ACTIVE = new Set(['queued', 'running', 'waiting']);
export const RUN_STATUSES = ['queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled', 'timed_out'];

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface RunSummary {
  id: string;
  workflow: string;
  namespace: string;
  version: number;
  status: string;
  success: boolean;
  attempt: number;
  trigger_type: string;
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  duration?: number | null;
  error?: string | null;
  reason?: string | null;
}

export interface Attempt {
  attempt: number;
  status: string;
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
  error: string | null;
  worker: string | null;
}

export interface RunStep {
  id: string;
  name: string;
  node: string;
  uses: string;
  status: string;
  attempt: number;
  attempts: Attempt[];
  outputs: unknown;
  error: string | null;
  reason: string | null;
  parent: string | null;
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
}

export interface RunDetail extends RunSummary {
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown> | null;
  trigger: Record<string, unknown>;
  steps: RunStep[];
}

export interface WorkflowSummary {
  name: string;
  namespace: string;
  description: string;
  labels: Record<string, string>;
  version: number;
  author: string;
  updated_at: string;
  last_run: { id: string; status: string; created_at: string } | null;
  next_fire: string | null;
}

export interface WorkflowInput {
  name: string;
  type: string;
  required: boolean;
  default?: unknown;
  enum?: unknown[] | null;
  secret?: boolean;
  description?: string | null;
}

export interface WorkflowDetail extends WorkflowSummary {
  source: string;
  inputs: WorkflowInput[];
  steps: number;
}

export interface Version {
  version: number;
  checksum: string;
  author: string;
  created_at: string;
  current: boolean;
}
