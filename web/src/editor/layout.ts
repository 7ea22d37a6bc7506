import dagre from '@dagrejs/dagre';
import type { WorkflowGraph } from './yamlModel';

export const NODE_W = 180;
export const NODE_H = 56;
/** Space inside a group box: its title above the steps, a margin around them. */
export const GROUP_PAD = 16;
export const GROUP_HEAD = 26;

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Left-to-right layered layout of the step DAG. A `parallel`/`sequence` group is laid
 * out on its own first (its steps, the edges between them), then placed as one box in
 * the level above, with edges lifted to the boxes they cross into — so boxes never
 * overlap and a group's steps stay together. Positions are absolute top-left corners;
 * `relativeTo` gives the parent-relative ones React Flow wants for sub-flows.
 */
export function layoutGraph(graph: WorkflowGraph): Record<string, Box> {
  const parentOf = new Map(graph.steps.map((s) => [s.id, s.group]));
  const isGroup = new Set(graph.steps.filter((s) => s.kind === 'parallel' || s.kind === 'sequence').map((s) => s.id));
  const kidsOf = (id: string | undefined) => graph.steps.filter((s) => s.group === id).map((s) => s.id);
  const rel: Record<string, { x: number; y: number }> = {};
  const size: Record<string, { width: number; height: number }> = {};

  /** Lays out the members of one level; returns the size of their bounding box. */
  const level = (members: string[]): { width: number; height: number } => {
    for (const m of members) {
      const kids = isGroup.has(m) ? kidsOf(m) : [];
      if (kids.length) {
        const inner = level(kids);
        for (const k of kids) rel[k] = { x: rel[k].x + GROUP_PAD, y: rel[k].y + GROUP_PAD + GROUP_HEAD };
        size[m] = { width: Math.max(inner.width + 2 * GROUP_PAD, NODE_W), height: inner.height + 2 * GROUP_PAD + GROUP_HEAD };
      } else size[m] = { width: NODE_W, height: NODE_H };
    }
    const here = new Set(members);
    const lift = (id: string): string | undefined => {
      let cur: string | undefined = id;
      while (cur !== undefined && !here.has(cur)) cur = parentOf.get(cur);
      return cur;
    };
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: 'LR', nodesep: 30, ranksep: 60, marginx: 0, marginy: 0 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const m of members) g.setNode(m, { ...size[m] });
    for (const e of graph.edges) {
      const a = lift(e.source);
      const b = lift(e.target);
      if (a !== undefined && b !== undefined && a !== b) g.setEdge(a, b);
    }
    dagre.layout(g);
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    for (const m of members) {
      const p = g.node(m);
      rel[m] = { x: p.x - size[m].width / 2, y: p.y - size[m].height / 2 };
      minX = Math.min(minX, rel[m].x);
      minY = Math.min(minY, rel[m].y);
      maxX = Math.max(maxX, rel[m].x + size[m].width);
      maxY = Math.max(maxY, rel[m].y + size[m].height);
    }
    for (const m of members) rel[m] = { x: rel[m].x - minX, y: rel[m].y - minY };
    return members.length ? { width: maxX - minX, height: maxY - minY } : { width: 0, height: 0 };
  };

  const top = kidsOf(undefined);
  level(top);
  const out: Record<string, Box> = {};
  const place = (ids: string[], ox: number, oy: number) => {
    for (const id of ids) {
      out[id] = { x: rel[id].x + ox, y: rel[id].y + oy, ...size[id] };
      if (isGroup.has(id)) place(kidsOf(id), out[id].x, out[id].y);
    }
  };
  place(top, 10, 10);
  return out;
}

/** `box` relative to its parent's top-left corner (React Flow's sub-flow positions). */
export function relativeTo(box: Box, parent: Box | undefined): { x: number; y: number } {
  return parent ? { x: box.x - parent.x, y: box.y - parent.y } : { x: box.x, y: box.y };
}
