import { Handle, Position, type Node, type NodeProps } from '@xyflow/react';

export type StepNodeData = { label: string; uses: string; group?: string; status?: string; error?: string };
export type StepFlowNode = Node<StepNodeData, 'step'>;
export type GroupNodeData = { label: string; kind: 'parallel' | 'sequence'; status?: string; error?: string };
export type GroupFlowNode = Node<GroupNodeData, 'stepGroup'>;
export type FlowNode = StepFlowNode | GroupFlowNode;

export function StepNode({ data, selected, id }: NodeProps<StepFlowNode>) {
  return (
    <div className={`step-node status-${data.status ?? 'none'}${selected ? ' selected' : ''}${data.error ? ' invalid' : ''}`} data-step={id} title={data.error}>
      <Handle type="target" position={Position.Left} aria-label={`${id} input`} />
      <div className="step-id">{data.label}</div>
      <div className="step-uses">
        {data.uses}
        {data.status ? ` · ${data.status}` : ''}
      </div>
      {data.error && <div className="step-error">{data.error}</div>}
      <Handle type="source" position={Position.Right} aria-label={`${id} output`} />
    </div>
  );
}

/** A `parallel` or `sequence` group: a box drawn around its steps (a React Flow sub-flow). */
export function GroupNode({ data, selected, id }: NodeProps<GroupFlowNode>) {
  return (
    <div
      className={`group-node kind-${data.kind}${selected ? ' selected' : ''}${data.error ? ' invalid' : ''} status-${data.status ?? 'none'}`}
      data-group={id}
      title={[data.status, data.error].filter(Boolean).join(': ') || undefined}
    >
      <Handle type="target" position={Position.Left} aria-label={`${id} input`} />
      <div className="group-head">
        <span className="group-kind">{data.kind === 'parallel' ? '⇉ parallel' : '→ sequence'}</span> <strong>{data.label}</strong>
      </div>
      <Handle type="source" position={Position.Right} aria-label={`${id} output`} />
    </div>
  );
}

export const nodeTypes = { step: StepNode, stepGroup: GroupNode };
