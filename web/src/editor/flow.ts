// The React Flow nodes and edges for a workflow graph: steps, and groups as sub-flows
// (parents listed before their children, children positioned relative to them).
import type { Edge } from '@xyflow/react';
import { type Box, relativeTo } from './layout';
import type { FlowNode } from './StepNode';
import type { WorkflowGraph } from './yamlModel';

export interface FlowOptions {
  layout: Record<string, Box>;
  /** The nodes shown before: a node keeps its place when its group and size did not change. */
  previous?: FlowNode[];
  /** Where a new top-level step was dropped (flow coordinates). */
  dropped?: Record<string, { x: number; y: number }>;
  selected?: ReadonlySet<string>;
  statuses?: Record<string, string>;
  errors?: Record<string, string>;
  interactive?: boolean;
}

export function flowNodes(graph: WorkflowGraph, o: FlowOptions): FlowNode[] {
  const prev = new Map((o.previous ?? []).map((n) => [n.id, n]));
  const depth = new Map<string, number>();
  const depthOf = (id: string | undefined): number => {
    if (id === undefined) return 0;
    if (!depth.has(id)) depth.set(id, 1 + depthOf(graph.steps.find((s) => s.id === id)?.group));
    return depth.get(id)!;
  };
  const shown = graph.steps.filter((s) => o.layout[s.id]);
  const ordered = [...shown].sort((a, b) => depthOf(a.id) - depthOf(b.id));
  const stable = new Set<string>();
  const out: FlowNode[] = [];
  for (const s of ordered) {
    const box = o.layout[s.id];
    const isGroup = s.kind === 'parallel' || s.kind === 'sequence';
    const old = prev.get(s.id);
    const sameSize = !isGroup || (old?.width === box.width && old?.height === box.height);
    const parentStable = s.group === undefined || stable.has(s.group);
    let position = relativeTo(box, s.group ? o.layout[s.group] : undefined);
    if (old && old.parentId === s.group && old.type === (isGroup ? 'stepGroup' : 'step') && sameSize && parentStable) {
      position = old.position;
      stable.add(s.id);
    } else if (s.group === undefined && o.dropped?.[s.id]) position = o.dropped[s.id];
    const common = {
      id: s.id,
      position,
      selected: o.selected?.has(s.id) ?? false,
      ...(s.group !== undefined ? { parentId: s.group, extent: 'parent' as const } : {}),
      ...(o.interactive === false ? { draggable: false, connectable: false } : {}),
    };
    if (isGroup) {
      out.push({
        ...common,
        type: 'stepGroup',
        width: box.width,
        height: box.height,
        style: { width: box.width, height: box.height },
        data: { label: s.id, kind: s.kind as 'parallel' | 'sequence', status: o.statuses?.[s.id], error: o.errors?.[s.id] },
      });
    } else {
      out.push({ ...common, type: 'step', data: { label: s.id, uses: s.uses, group: s.group, status: o.statuses?.[s.id], error: o.errors?.[s.id] } });
    }
  }
  return out;
}

export function flowEdges(graph: WorkflowGraph, selected?: ReadonlySet<string>, statuses?: Record<string, string>): Edge[] {
  return graph.edges.map((e) => {
    const id = `${e.source}->${e.target}`;
    return {
      id,
      source: e.source,
      target: e.target,
      selected: selected?.has(id) ?? false,
      className: e.implicit ? 'implicit' : '',
      ariaLabel: `${e.source} to ${e.target}`,
      zIndex: 1,
      animated: statuses ? statuses[e.target] === 'running' : undefined,
    };
  });
}
