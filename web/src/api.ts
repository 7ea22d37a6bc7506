// The public API client: bearer tokens with one refresh on 401, JSON errors, SSE over fetch.
export const API = '/api/v1';

export interface ApiErrorBody {
  code: string;
  message: string;
  details?: unknown;
}

export class ApiError extends Error {
  status: number;
  code: string;
  details: unknown;
  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.status = status;
    this.code = body.code;
    this.details = body.details;
  }
}

const STORE_KEY = 'plait.session';

interface Session {
  access_token: string;
  refresh_token: string;
}

let session: Session | null = load();
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<() => void>();

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(STORE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

function save(s: Session | null) {
  session = s;
  try {
    if (s) sessionStorage.setItem(STORE_KEY, JSON.stringify(s));
    else sessionStorage.removeItem(STORE_KEY);
  } catch {
    /* storage unavailable: keep the session in memory */
  }
}

export function isLoggedIn(): boolean {
  return session !== null;
}

/** Called when the session ends (refresh refused): the app returns to the login page. */
export function onSessionExpired(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export async function login(username: string, password: string, otp?: string): Promise<void> {
  const form = new URLSearchParams({ username, password });
  if (otp) form.set('otp', otp);
  const res = await fetch(`${API}/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  if (!res.ok) throw await toError(res);
  save((await res.json()) as Session);
}

export async function logout(): Promise<void> {
  const s = session;
  save(null);
  if (!s) return;
  await fetch(`${API}/auth/logout`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.access_token}` },
    body: JSON.stringify({ refresh_token: s.refresh_token }),
  }).catch(() => undefined);
}

async function refresh(): Promise<boolean> {
  if (!session) return false;
  if (!refreshing) {
    const token = session.refresh_token;
    refreshing = fetch(`${API}/auth/refresh`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    })
      .then(async (res) => {
        if (!res.ok) return false;
        save((await res.json()) as Session);
        return true;
      })
      .catch(() => false)
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

async function toError(res: Response): Promise<ApiError> {
  let body: ApiErrorBody = { code: 'http_' + res.status, message: res.statusText || 'request failed' };
  try {
    const data = await res.json();
    if (data && data.error) body = data.error;
    else if (data && data.detail) body = { code: 'http_' + res.status, message: String(data.detail) };
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, body);
}

function expire() {
  save(null);
  listeners.forEach((fn) => fn());
}

/** A request with the session's token; a 401 refreshes once, then ends the session. */
export async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  const send = () => {
    const headers = new Headers(init.headers);
    if (session) headers.set('Authorization', `Bearer ${session.access_token}`);
    return fetch(path.startsWith('/') ? path : `${API}/${path}`, { ...init, headers });
  };
  let res = await send();
  if (res.status === 401 && session) {
    if (await refresh()) res = await send();
    if (res.status === 401) expire();
  }
  return res;
}

export async function api<T = unknown>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const { json, ...rest } = init;
  const req: RequestInit = { ...rest };
  if (json !== undefined) {
    req.body = JSON.stringify(json);
    req.headers = { 'Content-Type': 'application/json', ...(rest.headers as Record<string, string>) };
  }
  const res = await raw(path, req);
  if (!res.ok) throw await toError(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('Content-Type') || '';
  return (type.includes('json') ? await res.json() : await res.text()) as T;
}

export function qs(params: Record<string, string | number | string[] | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => x && q.append(k, x));
    else q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** Parse a text/event-stream chunk stream; returns the events of complete blocks and the rest. */
export function parseSse(buffer: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = [];
  const normalized = buffer.replace(/\r\n?/g, '\n');
  const blocks = normalized.split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let event = 'message';
    const data: string[] = [];
    let id: string | undefined;
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (data.length) events.push({ event, data: data.join('\n'), id });
  }
  return { events, rest };
}

/**
 * Follow a Server-Sent Events URL with the bearer token (EventSource cannot send one),
 * reconnecting with Last-Event-ID until `end` arrives or the signal aborts.
 */
export async function followSse(path: string, onEvent: (e: SseEvent) => void, signal: AbortSignal): Promise<void> {
  let lastId: string | undefined;
  let delay = 500;
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const res = await raw(path, { headers, signal });
      if (!res.ok || !res.body) throw await toError(res);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        const { events, rest } = parseSse(buf);
        buf = rest;
        for (const e of events) {
          if (e.id) lastId = e.id;
          onEvent(e);
          if (e.event === 'end') ended = true;
        }
        delay = 500;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status < 500 && err.status !== 429) throw err;
    }
    if (ended || signal.aborted) return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

// -- AI service: insights over the run history, drafts of workflows from a sentence ----------

/** One failed step attempt of a failure cluster. */
export interface FailureExample {
  run_id: string;
  workflow: string;
  step: string;
  attempt: number;
  error: string;
  at: string;
}

/** Failed step attempts grouped by the similarity of their error text. */
export interface FailureCluster {
  id: string;
  /** The representative error line. */
  label: string;
  count: number;
  first_seen: string;
  last_seen: string;
  workflows: string[];
  steps: { workflow: string; step: string; count: number }[];
  examples: FailureExample[];
}

export interface FailureClusters {
  /** `embeddings` with the offline sentence model, `tokens` without it. */
  method: 'embeddings' | 'tokens';
  clusters: FailureCluster[];
}

/** A run (`step` null) or a step whose duration is far outside its own history. */
export interface Anomaly {
  run_id: string;
  workflow: string;
  step: string | null;
  duration: number;
  median: number;
  mad: number;
  /** Robust z-score: (duration - median) / (1.4826 · MAD). */
  score: number;
  direction: 'slow' | 'fast';
  at: string;
}

/** A retry policy or timeout the history suggests for a step. */
export interface Suggestion {
  workflow: string;
  step: string;
  kind: 'retries' | 'timeout';
  current: unknown;
  /** A YAML-ready value: `{retries: {...}}` or `{timeout: "4m"}`. */
  suggested: Record<string, unknown>;
  reason: string;
  evidence: Record<string, unknown>;
}

/** The anomaly flag of `GET /runs/{id}` (null or absent: nothing unusual). */
export interface RunAnomaly {
  score: number;
  duration: number;
  median: number;
  direction: 'slow' | 'fast';
}

export interface InsightFilter {
  namespace?: string;
  workflow?: string;
  /** ISO time: only what happened since. */
  since?: string;
  limit?: number;
}

export function getFailureClusters(f: InsightFilter = {}): Promise<FailureClusters> {
  return api<FailureClusters>(`${API}/insights/failures${qs({ ...f })}`);
}

export function getAnomalies(f: InsightFilter = {}): Promise<{ anomalies: Anomaly[] }> {
  return api<{ anomalies: Anomaly[] }>(`${API}/insights/anomalies${qs({ ...f })}`);
}

export function getSuggestions(f: Pick<InsightFilter, 'namespace' | 'workflow'> = {}): Promise<{ suggestions: Suggestion[] }> {
  return api<{ suggestions: Suggestion[] }>(`${API}/insights/suggestions${qs({ ...f })}`);
}

export interface DraftRequest {
  prompt: string;
  /** The name of an `llm` connection (of `namespace`, or a global one). */
  connection: string;
  namespace?: string;
  model?: string | null;
}

export interface DraftProblem {
  line: number | null;
  column: number | null;
  message: string;
}

export interface DraftResult {
  /** The workflow as YAML text. */
  source: string;
  valid: boolean;
  errors: DraftProblem[];
  model: string;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number; cost: number | null };
}

/** Ask an LLM connection for a workflow draft; nothing is deployed. */
export function createDraft(body: DraftRequest): Promise<DraftResult> {
  return api<DraftResult>(`${API}/drafts`, { method: 'POST', json: body });
}
