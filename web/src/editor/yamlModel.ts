// The workflow YAML as the canvas sees it. Every visual edit goes text -> yaml Document ->
// targeted change -> text, so the author's comments, key order and formatting survive.
import { Document, isMap, isScalar, isSeq, parseDocument, YAMLMap, YAMLSeq } from 'yaml';

/** Serialisation close to what people write: `{a: 1}`, `[a, b]`, long lines kept. */
export const TO_STRING = { flowCollectionPadding: false, lineWidth: 0 } as const;

export type Path = (string | number)[];

export interface StepInfo {
  id: string;
  path: Path;
  kind: 'shell' | 'uses' | 'parallel' | 'sequence';
  uses: string;
  group?: string;
  /** `needs` as written, or undefined when the step follows the default order. */
  needs?: string[];
  section: 'steps';
}

export interface GraphEdge {
  source: string;
  target: string;
  implicit: boolean;
}

export interface WorkflowGraph {
  name: string;
  steps: StepInfo[];
  /** Leaf steps only: groups are drawn as their children. */
  nodes: StepInfo[];
  edges: GraphEdge[];
}

export interface ParseResult {
  doc: Document | null;
  errors: { message: string; line?: number }[];
}

export function parse(text: string): ParseResult {
  const doc = parseDocument(text, { keepSourceTokens: false });
  const errors = doc.errors.map((e) => ({ message: e.message, line: e.linePos?.[0]?.line }));
  if (errors.length) return { doc: null, errors };
  if (doc.contents !== null && !isMap(doc.contents)) {
    return { doc: null, errors: [{ message: 'the workflow must be a mapping' }] };
  }
  return { doc, errors: [] };
}

function str(node: unknown): string | undefined {
  if (isScalar(node)) return node.value == null ? undefined : String(node.value);
  return undefined;
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '');
}

function needsOf(item: YAMLMap): string[] | undefined {
  const n = item.get('needs', true);
  if (n === undefined) return undefined;
  if (isSeq(n)) return n.items.map((x) => str(x)).filter((x): x is string => !!x);
  const s = str(n);
  return s ? [s] : [];
}

function stepId(item: YAMLMap, fallback: string): string {
  return str(item.get('id', true)) ?? (str(item.get('name', true)) ? slug(str(item.get('name', true))!) : fallback);
}

function describe(item: YAMLMap, path: Path, fallback: string, group?: string): StepInfo {
  const kind: StepInfo['kind'] = item.has('parallel')
    ? 'parallel'
    : item.has('sequence')
      ? 'sequence'
      : item.has('uses')
        ? 'uses'
        : 'shell';
  const uses = kind === 'uses' ? (str(item.get('uses', true)) ?? '') : kind;
  return { id: stepId(item, fallback), path, kind, uses, group, needs: needsOf(item), section: 'steps' };
}

/** Every step of `steps:` (groups and their children, depth first). */
export function listSteps(doc: Document): StepInfo[] {
  const out: StepInfo[] = [];
  const walk = (seq: unknown, path: Path, group?: string) => {
    if (!isSeq(seq)) return;
    seq.items.forEach((item, i) => {
      if (!isMap(item)) return;
      const info = describe(item, [...path, i], `step-${path.length}-${i}`, group);
      out.push(info);
      if (info.kind === 'parallel' || info.kind === 'sequence') {
        walk(item.get(info.kind, true), [...path, i, info.kind], info.id);
      }
    });
  };
  walk(doc.get('steps', true), ['steps']);
  return out;
}

/** The DAG the engine runs: defaults (previous step, group order) and explicit `needs`. */
export function buildGraph(doc: Document): WorkflowGraph {
  const steps = listSteps(doc);
  const byId = new Map(steps.map((s) => [s.id, s]));
  const exitsCache = new Map<string, string[]>();
  const childrenOf = (s: StepInfo) => steps.filter((c) => c.group === s.id);
  const exits = (s: StepInfo): string[] => {
    const hit = exitsCache.get(s.id);
    if (hit) return hit;
    let result: string[] = [s.id];
    if (s.kind === 'parallel') result = childrenOf(s).flatMap(exits);
    else if (s.kind === 'sequence') {
      const kids = childrenOf(s);
      result = kids.length ? exits(kids[kids.length - 1]) : [];
    }
    exitsCache.set(s.id, result);
    return result;
  };
  const expand = (ids: string[]) => ids.flatMap((id) => (byId.has(id) ? exits(byId.get(id)!) : [id]));
  const edges: GraphEdge[] = [];
  const visit = (list: StepInfo[], mode: 'sequence' | 'parallel', inherited: string[]) => {
    let prev = inherited;
    for (const s of list) {
      const explicit = s.needs !== undefined;
      const deps = explicit ? expand(s.needs!) : prev;
      if (s.kind === 'parallel' || s.kind === 'sequence') {
        visit(childrenOf(s), s.kind, deps);
      } else {
        for (const d of deps) edges.push({ source: d, target: s.id, implicit: !explicit });
      }
      if (mode === 'sequence') prev = exits(s);
    }
  };
  visit(
    steps.filter((s) => s.group === undefined),
    'sequence',
    [],
  );
  const name = str(doc.get('name', true)) ?? '';
  const nodes = steps.filter((s) => s.kind !== 'parallel' && s.kind !== 'sequence');
  return { name, steps, nodes, edges: edges.filter((e) => byId.has(e.source)) };
}

export function graphFromText(text: string): { graph: WorkflowGraph | null; errors: ParseResult['errors'] } {
  const { doc, errors } = parse(text);
  return { graph: doc ? buildGraph(doc) : null, errors };
}

export function edit(text: string, fn: (doc: Document, steps: StepInfo[]) => void): string {
  const { doc, errors } = parse(text);
  if (!doc) throw new Error(errors[0]?.message ?? 'the YAML does not parse');
  fn(doc, listSteps(doc));
  return doc.toString(TO_STRING);
}

export function find(steps: StepInfo[], id: string): StepInfo {
  const s = steps.find((x) => x.id === id);
  if (!s) throw new Error(`no step ${id}`);
  return s;
}

export function flowSeq(doc: Document, items: string[]) {
  const node = doc.createNode(items) as YAMLSeq;
  node.flow = true;
  return node;
}

/** A step id not used yet, from `base`. */
export function freshId(text: string, base: string): string {
  const { doc } = parse(text);
  const used = new Set(doc ? listSteps(doc).map((s) => s.id) : []);
  let n = 1;
  let id = base;
  while (used.has(id)) id = `${base}-${++n}`;
  return id;
}

/**
 * Append a step to `steps:` — or to the group `into` — as the last of its list. At the
 * top level it starts unconnected (`needs: []`) unless it is the first; in a group it
 * takes the group's order (at the same time as the others, or after the last one).
 */
export function addStep(text: string, id: string, body: Record<string, unknown>, into?: string): string {
  return edit(text, (doc, steps) => {
    let seq: unknown;
    if (into !== undefined) {
      const g = find(steps, into);
      if (g.kind !== 'parallel' && g.kind !== 'sequence') throw new Error(`${into} is not a group`);
      seq = doc.getIn([...g.path, g.kind], true);
    } else {
      seq = doc.get('steps', true);
      if (!isSeq(seq)) {
        seq = doc.createNode([]);
        doc.set('steps', seq);
      }
    }
    if (!isSeq(seq)) throw new Error(`the steps of ${into} are not a list`);
    if (seq.flow && seq.items.length === 0) seq.flow = false;
    const step: Record<string, unknown> = { id, ...body };
    if (into === undefined && steps.length) step.needs = [];
    const node = doc.createNode(step) as YAMLMap;
    const needs = node.get('needs', true);
    if (isSeq(needs)) needs.flow = true;
    const w = node.get('with', true);
    if (isMap(w)) w.flow = true;
    seq.items.push(node);
  });
}

/** Set one key of a step (`undefined` or '' removes it); keeps the key's place if it exists. */
export function setStepField(text: string, id: string, key: string | string[], value: unknown): string {
  return edit(text, (doc, steps) => {
    const s = find(steps, id);
    const keys = Array.isArray(key) ? key : [key];
    const path = [...s.path, ...keys];
    if (value === undefined || value === '' || (Array.isArray(value) && value.length === 0 && keys[0] !== 'needs')) {
      if (doc.hasIn(path)) doc.deleteIn(path);
      // drop an emptied `with:`
      if (keys.length > 1) {
        const parent = doc.getIn([...s.path, ...keys.slice(0, -1)], true);
        if (isMap(parent) && parent.items.length === 0) doc.deleteIn([...s.path, ...keys.slice(0, -1)]);
      }
      return;
    }
    const existing = doc.getIn(path, true);
    if (isScalar(existing) && (typeof value !== 'object' || value === null)) {
      existing.value = value;
      return;
    }
    const node = doc.createNode(value);
    if (isSeq(node) || (isMap(node) && keys.length > 1)) (node as YAMLSeq).flow = true;
    const parentPath = path.slice(0, -1);
    const parent = doc.getIn(parentPath, true);
    if (!isMap(parent)) {
      const m = doc.createNode({}) as YAMLMap;
      m.flow = true;
      doc.setIn(parentPath, m);
    }
    doc.setIn(path, node);
  });
}

/** Rename a step and every `needs` that names it. */
export function renameStep(text: string, from: string, to: string): string {
  if (from === to) return text;
  return edit(text, (doc, steps) => {
    if (steps.some((s) => s.id === to)) throw new Error(`a step ${to} exists`);
    const s = find(steps, from);
    doc.setIn([...s.path, 'id'], to);
    for (const other of steps) rewriteNeeds(doc, other, (ids) => ids.map((x) => (x === from ? to : x)));
  });
}

export function rewriteNeeds(doc: Document, s: StepInfo, fn: (ids: string[]) => string[]) {
  if (s.needs === undefined) return;
  const next = fn(s.needs);
  if (next.join('\u0000') === s.needs.join('\u0000')) return;
  const node = doc.getIn([...s.path, 'needs'], true);
  if (isSeq(node)) {
    const flow = node.flow;
    const fresh = flowSeq(doc, next);
    fresh.flow = flow;
    doc.setIn([...s.path, 'needs'], fresh);
  } else if (next.length === 1) doc.setIn([...s.path, 'needs'], next[0]);
  else doc.setIn([...s.path, 'needs'], flowSeq(doc, next));
}

/**
 * What a step waits for now, as ids that could be written in its `needs`: its own
 * `needs`, else the step before it in a sequence, else what its group waits for.
 */
export function depsIds(steps: StepInfo[], s: StepInfo): string[] {
  if (s.needs !== undefined) return [...s.needs];
  const idx = Number(s.path[s.path.length - 1]);
  const parent = s.group === undefined ? undefined : steps.find((x) => x.id === s.group);
  const mode = parent ? parent.kind : 'sequence';
  if (mode === 'sequence' && idx > 0) {
    const container = s.path.slice(0, -1).join('\u0000');
    const prev = steps.find((x) => x.path.slice(0, -1).join('\u0000') === container && Number(x.path[x.path.length - 1]) === idx - 1);
    if (prev) return [prev.id];
  }
  return parent ? depsIds(steps, parent) : [];
}

/** Connect source -> target: target needs source (the canvas's "connect"). */
export function connect(text: string, source: string, target: string): string {
  if (source === target) return text;
  return edit(text, (doc, steps) => {
    const t = find(steps, target);
    find(steps, source);
    const now = depsIds(steps, t);
    if (t.needs !== undefined && now.includes(source)) return;
    const next = now.includes(source) ? now : [...now, source];
    if (t.needs === undefined) doc.setIn([...t.path, 'needs'], flowSeq(doc, next));
    else rewriteNeeds(doc, t, () => next);
  });
}

/** Remove the dependency source -> target (explicit `needs`, possibly `[]`). */
export function disconnect(text: string, source: string, target: string): string {
  return edit(text, (doc, steps) => {
    const t = find(steps, target);
    const next = depsIds(steps, t).filter((x) => x !== source);
    if (t.needs === undefined) doc.setIn([...t.path, 'needs'], flowSeq(doc, next));
    else rewriteNeeds(doc, t, () => next);
  });
}

/** Delete a step and its mentions in other steps' `needs`. */
export function removeStep(text: string, id: string): string {
  return edit(text, (doc, steps) => {
    const s = find(steps, id);
    for (const other of steps) if (other.id !== id) rewriteNeeds(doc, other, (ids) => ids.filter((x) => x !== id));
    doc.deleteIn(s.path);
  });
}

/** A plain JS view of one step (for the side panel). */
export function stepValues(text: string, id: string): Record<string, unknown> | null {
  const { doc } = parse(text);
  if (!doc) return null;
  const s = listSteps(doc).find((x) => x.id === id);
  if (!s) return null;
  const node = doc.getIn(s.path, true);
  return isMap(node) ? (node.toJSON() as Record<string, unknown>) : null;
}

/** Every step's plain values, by id, from one parse (for checks over the whole file). */
export function allStepValues(text: string): Record<string, Record<string, unknown>> {
  const { doc } = parse(text);
  if (!doc) return {};
  const out: Record<string, Record<string, unknown>> = {};
  for (const s of listSteps(doc)) {
    const node = doc.getIn(s.path, true);
    if (isMap(node)) out[s.id] = node.toJSON() as Record<string, unknown>;
  }
  return out;
}

/** The step a server validation error's `path` (["steps", 0, "with", …]) points at. */
export function stepForErrorPath(text: string, path: unknown[]): string | undefined {
  const { doc } = parse(text);
  if (!doc || !Array.isArray(path)) return undefined;
  let best: StepInfo | undefined;
  for (const s of listSteps(doc)) {
    if (s.path.every((p, i) => String(path[i]) === String(p)) && (!best || s.path.length > best.path.length)) best = s;
  }
  return best?.id;
}

export function newWorkflowText(name: string): string {
  return `# ${name}: built in the Plait editor\nname: ${name}\ndescription: ''\nsteps: []\n`;
}

/** Set a top-level key (name, description, namespace); '' removes optional ones. */
export function setTopField(text: string, key: string, value: string): string {
  const { doc, errors } = parse(text);
  if (!doc) throw new Error(errors[0]?.message ?? 'the YAML does not parse');
  if (value === '' && key !== 'name') {
    if (doc.has(key)) doc.delete(key);
  } else {
    const existing = doc.get(key, true);
    if (isScalar(existing)) existing.value = value;
    else doc.set(key, value);
  }
  return doc.toString(TO_STRING);
}

export function topValue(text: string, key: string): string {
  const { doc } = parse(text);
  const v = doc?.get(key);
  return v == null ? '' : String(v);
}
