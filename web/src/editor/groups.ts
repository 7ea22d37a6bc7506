// Grouping steps into `parallel:` or `sequence:` and back, as edits of the YAML document.
// The step maps themselves are moved (not rebuilt), so their comments and key order go
// with them; `needs` are written out where the default order would otherwise change
// what a step waits for.
import { isMap, isScalar, isSeq, YAMLMap, YAMLSeq, type Document } from 'yaml';
import { depsIds, edit, find, flowSeq, parse, listSteps, rewriteNeeds, type StepInfo } from './yamlModel';

export type GroupKind = 'parallel' | 'sequence';

const GROUP_KEYS = new Set(['id', 'name', 'needs', 'parallel', 'sequence']);

function containerKey(s: StepInfo): string {
  return s.path.slice(0, -1).join('\u0000');
}

function indexOf(s: StepInfo): number {
  return Number(s.path[s.path.length - 1]);
}

/** Why `ids` cannot be grouped, or null when they can. */
export function groupProblem(text: string, ids: string[]): string | null {
  const { doc } = parse(text);
  if (!doc) return 'the YAML does not parse';
  if (ids.length < 2) return 'select at least two steps (Ctrl- or Shift-click)';
  const steps = listSteps(doc);
  const picked = ids.map((id) => steps.find((s) => s.id === id));
  if (picked.some((s) => !s)) return 'a selected step no longer exists';
  const where = containerKey(picked[0]!);
  if (picked.some((s) => containerKey(s!) !== where)) return 'the selected steps must be in the same list (not in different groups)';
  return null;
}

/** Put the steps `ids` (siblings) into a new `kind` group `groupId`, where the first of them was. */
export function groupSteps(text: string, ids: string[], kind: GroupKind, groupId: string): string {
  const problem = groupProblem(text, ids);
  if (problem) throw new Error(problem);
  return edit(text, (doc, steps) => {
    if (steps.some((s) => s.id === groupId)) throw new Error(`a step ${groupId} exists`);
    const picked = ids.map((id) => find(steps, id)).sort((a, b) => indexOf(a) - indexOf(b));
    const containerPath = picked[0].path.slice(0, -1);
    const seq = doc.getIn(containerPath, true) as YAMLSeq;
    const nodes = picked.map((s) => seq.items[indexOf(s)]);
    const group = doc.createNode({ id: groupId }) as YAMLMap;
    const children = new YAMLSeq(doc.schema);
    children.items = nodes;
    group.set(kind, children);
    // The comment above the first step now introduces the group.
    const first = nodes[0];
    if (isMap(first) && first.commentBefore) {
      group.commentBefore = first.commentBefore;
      first.commentBefore = undefined;
    }
    for (const s of [...picked].reverse()) seq.items.splice(indexOf(s), 1);
    seq.items.splice(indexOf(picked[0]), 0, group);
  });
}

/** Replace the group `id` by its steps, keeping what each step waits for. */
export function ungroupStep(text: string, id: string): string {
  return edit(text, (doc, steps) => {
    const g = find(steps, id);
    if (g.kind !== 'parallel' && g.kind !== 'sequence') throw new Error(`${id} is not a group`);
    const node = doc.getIn(g.path, true) as YAMLMap;
    const extra = node.items.map((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key))).filter((k) => !GROUP_KEYS.has(k));
    if (extra.length) throw new Error(`group ${id} has ${extra.join(', ')}: move ${extra.length > 1 ? 'them' : 'it'} to its steps (YAML tab) first`);
    const childSeq = node.get(g.kind, true);
    const kidNodes = isSeq(childSeq) ? [...childSeq.items] : [];
    const kids = steps.filter((s) => s.group === id).sort((a, b) => indexOf(a) - indexOf(b));
    const parent = g.group === undefined ? undefined : find(steps, g.group);
    const mode = parent ? parent.kind : 'sequence';
    const waits = depsIds(steps, g);
    const explicit = g.needs !== undefined;
    const exits = g.kind === 'parallel' ? kids.map((k) => k.id) : kids.length ? [kids[kids.length - 1].id] : [];
    const setNeeds = (i: number, ids: string[]) => {
      const m = kidNodes[i];
      if (isMap(m) && kids[i].needs === undefined) m.set('needs', flowSeq(doc, ids));
    };
    kids.forEach((_, i) => {
      if (i === 0 || g.kind === 'parallel') {
        // the first step (or every step of a parallel group) waited for what the group waited for
        if (explicit || (g.kind === 'parallel' && i > 0 && mode === 'sequence')) setNeeds(i, waits);
      } else if (mode === 'parallel') setNeeds(i, [kids[i - 1].id]); // a sequence inside a parallel list
    });
    // The step after the group waited for all of a parallel group's steps.
    if (mode === 'sequence' && g.kind === 'parallel' && kids.length > 1) {
      const next = steps.find((s) => containerKey(s) === containerKey(g) && indexOf(s) === indexOf(g) + 1);
      if (next && next.needs === undefined) doc.setIn([...next.path, 'needs'], flowSeq(doc, exits));
    }
    for (const other of steps) {
      if (other.id !== id) rewriteNeeds(doc, other, (ids) => ids.flatMap((x) => (x === id ? exits : [x])));
    }
    if (node.commentBefore && isMap(kidNodes[0])) {
      const m = kidNodes[0] as YAMLMap;
      m.commentBefore = m.commentBefore ? `${node.commentBefore}\n${m.commentBefore}` : node.commentBefore;
    }
    const container = doc.getIn(g.path.slice(0, -1), true) as YAMLSeq;
    container.items.splice(indexOf(g), 1, ...kidNodes);
  });
}

/** Turn a parallel group into a sequence or back; the key keeps its place. */
export function setGroupKind(text: string, id: string, kind: GroupKind): string {
  return edit(text, (doc: Document, steps) => {
    const g = find(steps, id);
    if (g.kind !== 'parallel' && g.kind !== 'sequence') throw new Error(`${id} is not a group`);
    if (g.kind === kind) return;
    const node = doc.getIn(g.path, true) as YAMLMap;
    const pair = node.items.find((p) => isScalar(p.key) && p.key.value === g.kind);
    if (pair && isScalar(pair.key)) pair.key.value = kind;
  });
}
