// Drafting a workflow from a sentence (`POST /api/v1/drafts`): which connections can
// answer, the server's problems with a draft as `line:column: message`, the lines to
// mark, the tokens it cost, and what a refused request means for the person asking.
import { ApiError, type DraftProblem, type DraftResult } from '../api';
import type { Connection } from '../pages/connections';
import { errorText } from '../util';

/**
 * The `llm` connections a draft in `namespace` can use: that namespace's own, then the
 * global ones (`*`) whose name it does not shadow, each sorted by name.
 */
export function llmConnections(all: Connection[], namespace: string): Connection[] {
  const llm = all.filter((c) => c.type === 'llm');
  const own = llm.filter((c) => c.namespace === namespace).sort((a, b) => a.name.localeCompare(b.name));
  const taken = new Set(own.map((c) => c.name));
  const global = llm.filter((c) => c.namespace === '*' && !taken.has(c.name)).sort((a, b) => a.name.localeCompare(b.name));
  return [...own, ...global];
}

/** How a connection reads in the picker: `openai — gpt-4o-mini (global)`. */
export function connectionLabel(c: Connection): string {
  const model = typeof c.config.model === 'string' && c.config.model ? ` — ${c.config.model}` : '';
  return `${c.name}${model}${c.namespace === '*' ? ' (global)' : ''}`;
}

/** `3:5: message`, `3: message` without a column, the message alone without a line. */
export function problemText(p: DraftProblem): string {
  if (p.line == null) return p.message;
  return p.column == null ? `${p.line}: ${p.message}` : `${p.line}:${p.column}: ${p.message}`;
}

/** The problems of each line (1-based) that has any. */
export function problemLines(errors: DraftProblem[]): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const p of errors) {
    if (p.line == null) continue;
    out.set(p.line, [...(out.get(p.line) ?? []), p.message]);
  }
  return out;
}

/** `812 tokens (640 prompt + 172 completion) · $0.0004`; the cost only when it is known. */
export function usageText(usage: DraftResult['usage']): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const tokens = `${n(usage.total_tokens)} tokens (${n(usage.prompt_tokens)} prompt + ${n(usage.completion_tokens)} completion)`;
  return typeof usage.cost === 'number' && usage.cost > 0 ? `${tokens} · $${Number(usage.cost.toPrecision(3))}` : tokens;
}

/** Why a prompt cannot be sent yet, or null. The server checks the length. */
export function promptProblem(prompt: string): string | null {
  return prompt.trim() ? null : 'Describe the workflow first: what should run, when, and what happens on failure.';
}

/** A refused draft request as a sentence that says what to do next. */
export function draftErrorText(e: unknown): string {
  const text = errorText(e);
  if (!(e instanceof ApiError)) return `The draft could not be asked for: ${text}`;
  if (e.status === 502 || e.status === 504) return `The LLM provider failed: ${text}`;
  if (e.status === 400 || e.status === 404) return `${text} — choose another LLM connection.`;
  if (e.status === 403) return `${text} — drafting needs the editor role in this namespace.`;
  return text;
}
