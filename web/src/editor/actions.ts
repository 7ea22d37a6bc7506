// The actions the server can run, from `GET /api/v1/actions`, with their JSON Schemas.
// The palette lists them and the side panel builds each step's form from `input_schema`.
import { useEffect, useState } from 'react';
import { api } from '../api';
import { errorText } from '../util';
import type { JsonSchema } from './schemaForm';

export interface ActionInfo {
  name: string;
  version: string;
  description: string;
  source: string;
  input_schema: JsonSchema;
  output_schema: JsonSchema | null;
}

let cache: Promise<ActionInfo[]> | null = null;

/** The server's actions, fetched once per page load (they change only on restart). */
export function loadActions(): Promise<ActionInfo[]> {
  if (!cache) {
    cache = api<{ items: ActionInfo[] }>('/api/v1/actions').then(
      (r) => [...r.items].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name)),
      (e) => {
        cache = null; // try again next time
        throw e;
      },
    );
  }
  return cache;
}

/** Built-ins first (shell, http, … in their usual order), then the rest by name. */
const FIRST = ['shell', 'http', 'python', 'approval', 'sleep', 'notify', 'workflow', 'sql'];
function rank(a: ActionInfo): number {
  const i = FIRST.indexOf(a.name);
  return i < 0 ? FIRST.length : i;
}

export function useActions(): { actions: ActionInfo[]; error: string | null } {
  const [actions, setActions] = useState<ActionInfo[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    loadActions().then(
      (a) => live && setActions(a),
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, []);
  return { actions, error };
}

/** The `uses:` of a step, with `run:` (and no `uses:`) meaning the shell action. */
export function usesOf(values: Record<string, unknown>): string {
  if (typeof values.uses === 'string') return values.uses;
  if (values.parallel !== undefined) return 'parallel';
  if (values.sequence !== undefined) return 'sequence';
  return 'shell';
}

/** The body of a new step of `action`: shell uses the `run:` shorthand; others start
 * with the required inputs that have an example or default, so the form shows the rest. */
export function newStepBody(action: ActionInfo): Record<string, unknown> {
  if (action.name === 'shell') return { run: 'echo hello' };
  const body: Record<string, unknown> = { uses: action.name };
  const start: Record<string, unknown> = {};
  const props = action.input_schema.properties ?? {};
  for (const key of action.input_schema.required ?? []) {
    const p = props[key];
    const example = p?.examples?.[0] ?? p?.default;
    if (example !== undefined && example !== null) start[key] = example;
  }
  if (Object.keys(start).length) body.with = start;
  return body;
}

/** A readable title for an action name: `rabbitmq.publish` -> `Rabbitmq publish`. */
export function actionTitle(name: string): string {
  const words = name.replace(/[._-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
