import { Handle, Position, type NodeProps, type Node } from '@xyflow/react';

export type StepNodeData = { label: string; uses: string; group?: string; status?: string; error?: string };
export type StepFlowNode = Node<StepNodeData, 'step'>;

export function StepNode({ data, selected, id }: NodeProps<StepFlowNode>) {
  return (
    <div className={`step-node status-${data.status ?? 'none'}${selected ? ' selected' : ''}${data.error ? ' invalid' : ''}`} data-step={id} title={data.error}>
      <Handle type="target" position={Position.Left} aria-label={`${id} input`} />
      <div className="step-id">{data.label}</div>
      <div className="step-uses">
        {data.uses}
        {data.group ? ` · in ${data.group}` : ''}
        {data.status ? ` · ${data.status}` : ''}
      </div>
      {data.error && <div className="step-error">{data.error}</div>}
      <Handle type="source" position={Position.Right} aria-label={`${id} output`} />
    </div>
  );
}

export const nodeTypes = { step: StepNode };
