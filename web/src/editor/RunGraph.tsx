import { Background, Controls, ReactFlow, ReactFlowProvider, type Edge } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { useMemo } from 'react';
import { layoutGraph } from './layout';
import { nodeTypes, type StepFlowNode } from './StepNode';
import { graphFromText } from './yamlModel';

/** The run's graph coloured by step status (read-only). */
export default function RunGraph({ source, statuses }: { source: string; statuses: Record<string, string> }) {
  const graph = useMemo(() => graphFromText(source).graph, [source]);
  const positions = useMemo(() => (graph ? layoutGraph(graph) : {}), [graph]);
  if (!graph) return null;
  const nodes: StepFlowNode[] = graph.nodes.map((n) => ({
    id: n.id,
    type: 'step',
    position: positions[n.id],
    data: { label: n.id, uses: n.uses, group: n.group, status: statuses[n.id] ?? 'pending' },
    draggable: false,
    connectable: false,
  }));
  const edges: Edge[] = graph.edges.map((e) => ({
    id: `${e.source}->${e.target}`,
    source: e.source,
    target: e.target,
    animated: statuses[e.target] === 'running',
  }));
  return (
    <div className="graph" aria-label="Step graph" role="img">
      <ReactFlowProvider>
        <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes} fitView nodesConnectable={false} proOptions={{ hideAttribution: true }}>
          <Background />
          <Controls showInteractive={false} />
        </ReactFlow>
      </ReactFlowProvider>
    </div>
  );
}
