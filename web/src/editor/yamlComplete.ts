// Completion in the YAML tab: the keys of the workflow format, `uses:` from the server's
// actions, and each action's `with:` keys and enum values from its JSON Schema.
// Text-based (indentation and the lines above), so it works while the file is half
// typed and does not parse.
import type { ActionInfo } from './actions';
import { type JsonSchema, resolve } from './schemaForm';

export interface Suggestion {
  label: string;
  detail?: string;
  info?: string;
  /** What is inserted: `key: ` for keys. */
  apply: string;
}

export interface Completions {
  from: number;
  options: Suggestion[];
}

const TOP: [string, string][] = [
  ['name', 'the workflow name'],
  ['description', ''],
  ['namespace', 'RBAC scope, default "default"'],
  ['labels', 'stage, service, automation, trigger'],
  ['inputs', 'typed inputs'],
  ['env', 'environment of every step'],
  ['defaults', 'timeout and retries of every step'],
  ['timeout', 'the whole run'],
  ['concurrency', 'key, limit, on_conflict'],
  ['triggers', 'manual, schedule, webhook, event'],
  ['steps', 'the steps'],
  ['on_failure', 'recovery steps'],
  ['finally', 'steps that always run'],
  ['notify', 'notifications'],
  ['outputs', "the run's outputs"],
];

/** Where a step runs: the keys a step, a group and `defaults:` share (docs/cluster.md). */
const ROUTING: [string, string][] = [
  ['queue', 'the worker queue that runs it, default "default"'],
  ['runs_on', 'tags a worker must have, e.g. {gpu: a100}'],
  ['priority', 'order among due steps, higher first (default 0)'],
];

const STEP: [string, string][] = [
  ['id', 'unique step id'],
  ['name', 'display name'],
  ['uses', 'an action'],
  ['run', 'a shell command (shorthand for uses: shell)'],
  ['with', "the action's input"],
  ['env', 'environment'],
  ['if', 'run only if this expression is true'],
  ['needs', 'step ids this step waits for'],
  ['timeout', 'e.g. 5m'],
  ['retries', 'a count or a policy'],
  ['on_error', 'fail | continue | retry'],
  ['outputs', "the step's outputs"],
  ['for_each', 'fan out over a list'],
  ['max_parallel', 'bound for for_each'],
  ...ROUTING,
  ['parallel', 'steps run at the same time'],
  ['sequence', 'steps run one after the other'],
];

const DEFAULTS: [string, string][] = [
  ['timeout', 'of every step, e.g. 10m'],
  ['retries', 'a count or a policy'],
  ['on_error', 'fail | continue | retry'],
  ['env', 'environment of every step'],
  ...ROUTING,
];

const RETRY: [string, string][] = [
  ['max', 'retries after the first attempt'],
  ['backoff', 'exponential | linear | constant'],
  ['initial', 'first delay'],
  ['factor', 'growth per retry'],
  ['max_delay', 'longest delay'],
  ['jitter', 'randomise delays'],
];

const STEP_LISTS = new Set(['steps', 'parallel', 'sequence', 'on_failure', 'finally']);
const VALUES: Record<string, string[]> = {
  on_error: ['fail', 'continue', 'retry'],
  backoff: ['exponential', 'linear', 'constant'],
  on_conflict: ['queue', 'cancel_running', 'skip'],
  catch_up: ['none', 'latest', 'all'],
};

interface Context {
  /** Keys from the top to the cursor's map; `-` for a list item. */
  chain: string[];
  /** The first line of the innermost list item around the cursor, and its key column. */
  item?: { line: number; column: number };
}

const LINE = /^(\s*)(- +)?(?:([A-Za-z_][\w.-]*)\s*:(?:\s|$))?/;

/** Where the line at `index` sits, for a key starting at column `indent` (`dash`: typed after `- `). */
function context(lines: string[], index: number, indent: number, dash: number): Context {
  const chain: string[] = [];
  let item: Context['item'];
  let level = indent;
  if (dash) {
    item = { line: index, column: indent };
    chain.unshift('-');
    level = indent - dash;
  }
  for (let i = index - 1; i >= 0 && level > 0; i--) {
    const raw = lines[i];
    if (!raw.trim() || raw.trim().startsWith('#')) continue;
    const m = LINE.exec(raw)!;
    const own = m[1].length;
    if (own >= level) continue;
    if (m[2]) {
      // a list item around us: its first key is a sibling of ours
      if (!item) item = { line: i, column: own + m[2].length };
      chain.unshift('-');
      level = own;
    } else if (m[3]) {
      chain.unshift(m[3]);
      level = own;
    }
  }
  return { chain, item };
}

/** The `uses:` of the step starting at `item` (`run:` means shell). */
function usesOf(lines: string[], item: { line: number; column: number }): string | undefined {
  for (let i = item.line; i < lines.length; i++) {
    const raw = lines[i];
    if (i > item.line && raw.trim() && /^(\s*)/.exec(raw)![1].length < item.column) break;
    const m = LINE.exec(raw)!;
    const column = m[1].length + (m[2]?.length ?? 0);
    if (column !== item.column || !m[3]) continue;
    if (m[3] === 'uses') return raw.slice(raw.indexOf(':') + 1).trim().replace(/^['"]|['"]$/g, '').replace(/\s+#.*$/, '');
    if (m[3] === 'run') return 'shell';
  }
  return undefined;
}

function isStep(chain: string[]): boolean {
  return chain.length >= 2 && chain[chain.length - 1] === '-' && STEP_LISTS.has(chain[chain.length - 2]);
}

function props(schema: JsonSchema): [string, JsonSchema][] {
  return Object.entries(resolve(schema, schema).properties ?? {});
}

function enumOf(schema: JsonSchema, root: JsonSchema): unknown[] | undefined {
  const s = resolve(schema, root);
  if (s.enum) return s.enum;
  for (const b of s.anyOf ?? s.oneOf ?? []) {
    const e = enumOf(b, root);
    if (e) return e;
  }
  return undefined;
}

/** What can be typed at `pos` in `text`, or null. */
export function completionsAt(text: string, pos: number, actions: ActionInfo[]): Completions | null {
  const before = text.slice(0, pos);
  const lines = text.split('\n');
  const index = before.split('\n').length - 1;
  const typed = before.slice(before.lastIndexOf('\n') + 1);
  const actionOf = (ctx: Context) => {
    const parentIsStep = ctx.chain[ctx.chain.length - 1] === 'with' && isStep(ctx.chain.slice(0, -1));
    const name = parentIsStep && ctx.item ? usesOf(lines, ctx.item) : undefined;
    return name ? actions.find((a) => a.name === name) : undefined;
  };

  // a value: `key: partial`
  const value = /^(\s*)(- +)?([A-Za-z_][\w.-]*)\s*:\s+([\w.-]*)$/.exec(typed);
  if (value) {
    const key = value[3];
    const from = pos - value[4].length;
    if (key === 'uses') return { from, options: actions.map((a) => ({ label: a.name, detail: a.source, info: a.description, apply: a.name })) };
    if (VALUES[key]) return { from, options: VALUES[key].map((v) => ({ label: v, apply: v })) };
    const indent = value[1].length + (value[2]?.length ?? 0);
    const action = actionOf(context(lines, index, indent, value[2]?.length ?? 0));
    const prop = action && resolve(action.input_schema, action.input_schema).properties?.[key];
    const values = prop && enumOf(prop, action.input_schema);
    return values ? { from, options: values.map((v) => ({ label: String(v), apply: String(v) })) } : null;
  }

  // a key: `partial` at the start of a line, or after `- `
  const key = /^(\s*)(- +)?([\w.-]*)$/.exec(typed);
  if (!key) return null;
  const indent = key[1].length + (key[2]?.length ?? 0);
  const from = pos - key[3].length;
  const asKeys = (list: [string, string][]) => list.map(([k, d]) => ({ label: k, detail: d, apply: `${k}: ` }));
  if (indent === 0) return { from, options: asKeys(TOP) };
  const ctx = context(lines, index, indent, key[2]?.length ?? 0);
  const action = actionOf(ctx);
  if (action) {
    const required = new Set(resolve(action.input_schema, action.input_schema).required ?? []);
    return {
      from,
      options: props(action.input_schema).map(([k, p]) => ({ label: k, detail: required.has(k) ? 'required' : undefined, info: p.description, apply: `${k}: ` })),
    };
  }
  if (isStep(ctx.chain)) return { from, options: asKeys(STEP) };
  if (ctx.chain[ctx.chain.length - 1] === 'retries') return { from, options: asKeys(RETRY) };
  if (ctx.chain.length === 1 && ctx.chain[0] === 'defaults') return { from, options: asKeys(DEFAULTS) };
  return null;
}
