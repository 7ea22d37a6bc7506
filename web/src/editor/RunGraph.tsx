import { Background, Controls, ReactFlow, ReactFlowProvider } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { useMemo } from 'react';
import { flowEdges, flowNodes } from './flow';
import { layoutGraph } from './layout';
import { nodeTypes } from './StepNode';
import { graphFromText } from './yamlModel';

/** The run's graph coloured by step status (read-only); groups drawn as boxes. */
export default function RunGraph({ source, statuses }: { source: string; statuses: Record<string, string> }) {
  const graph = useMemo(() => graphFromText(source).graph, [source]);
  const layout = useMemo(() => (graph ? layoutGraph(graph) : {}), [graph]);
  if (!graph) return null;
  const withPending = Object.fromEntries(graph.steps.map((s) => [s.id, statuses[s.id] ?? 'pending']));
  const nodes = flowNodes(graph, { layout, statuses: withPending, interactive: false });
  const edges = flowEdges(graph, undefined, statuses);
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
