import {
  applyEdgeChanges,
  applyNodeChanges,
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection,
  type Edge,
  type EdgeChange,
  type NodeChange,
} from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { DragEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useLocation, useNavigate, useParams } from 'react-router-dom';
import { api, ApiError } from '../api';
import { hasRole, useMe } from '../me';
import { VersionHistory } from '../pages/VersionHistory';
import { ErrorBox, errorText, WorkflowDetail } from '../util';
import { type ActionInfo, actionTitle, newStepBody, useActions } from './actions';
import { lineDiff } from './diff';
import DraftDialog from './DraftDialog';
import { flowEdges, flowNodes } from './flow';
import { type GroupKind, groupProblem, groupSteps, ungroupStep } from './groups';
import { layoutGraph } from './layout';
import { Draft, StepPanel, stepSummary } from './StepPanel';
import { nodeTypes, type FlowNode } from './StepNode';
import { completionsAt } from './yamlComplete';
import YamlEditor from './YamlEditor';
import {
  addStep,
  allStepValues,
  connect,
  disconnect,
  freshId,
  graphFromText,
  newWorkflowText,
  removeStep,
  setTopField,
  stepForErrorPath,
  stepValues,
  topValue,
  type WorkflowGraph,
} from './yamlModel';

const DRAG_TYPE = 'application/plait-action';

function Canvas({
  graph,
  text,
  onText,
  selection,
  onSelection,
  stepErrors,
  actions,
}: {
  graph: WorkflowGraph;
  text: string;
  onText: (t: string) => void;
  selection: string[];
  onSelection: (ids: string[]) => void;
  stepErrors: Record<string, string>;
  actions: ActionInfo[];
}) {
  const flow = useReactFlow();
  const layout = useMemo(() => layoutGraph(graph), [graph]);
  const dropAt = useRef<Record<string, { x: number; y: number }>>({});
  const [nodes, setNodes] = useState<FlowNode[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);
  const selected = useMemo(() => new Set(selection), [selection]);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    setNodes((prev) => flowNodes(graph, { layout, previous: prev, dropped: dropAt.current, selected, errors: stepErrors }));
    setEdges((prev) => flowEdges(graph, new Set(prev.filter((e) => e.selected).map((e) => e.id))));
  }, [graph, layout, selected, stepErrors]); // eslint-disable-line react-hooks/exhaustive-deps

  const tidy = () => {
    dropAt.current = {};
    setNodes(flowNodes(graph, { layout, selected, errors: stepErrors }));
    window.requestAnimationFrame(() => flow.fitView({ maxZoom: 1.2 }));
  };

  const safe = (fn: () => string) => {
    try {
      onText(fn());
      setProblem(null);
      return true;
    } catch (e) {
      setProblem(errorText(e));
      return false;
    }
  };

  const onNodesChange = useCallback(
    (changes: NodeChange<FlowNode>[]) => {
      const removed = new Set(changes.filter((c) => c.type === 'remove').map((c) => (c as { id: string }).id));
      const picks = changes.filter((c) => c.type === 'select') as { id: string; selected: boolean }[];
      setNodes((nds) => applyNodeChanges(changes.filter((c) => c.type !== 'remove' && c.type !== 'select'), nds));
      if (picks.length) {
        const next = new Set(selection);
        for (const p of picks) {
          if (p.selected) next.add(p.id);
          else next.delete(p.id);
        }
        onSelection([...next]);
      }
      if (removed.size) {
        // deleting a group deletes its steps with it: remove only the outermost
        const outer = graph.steps.filter((s) => removed.has(s.id) && !(s.group && removed.has(s.group)));
        safe(() => outer.reduce((t, s) => removeStep(t, s.id), text));
        onSelection([]);
      }
    },
    [text, onText, selection, onSelection, graph], // eslint-disable-line react-hooks/exhaustive-deps
  );
  const onEdgesChange = useCallback(
    (changes: EdgeChange[]) => {
      const removed = changes.filter((c) => c.type === 'remove').map((c) => (c as { id: string }).id);
      setEdges((eds) => applyEdgeChanges(changes.filter((c) => c.type !== 'remove'), eds));
      if (removed.length) {
        safe(() =>
          removed.reduce((t, id) => {
            const [s, tg] = id.split('->');
            return disconnect(t, s, tg);
          }, text),
        );
      }
    },
    [text, onText], // eslint-disable-line react-hooks/exhaustive-deps
  );
  const onConnect = useCallback((c: Connection) => safe(() => connect(text, c.source, c.target)), [text]); // eslint-disable-line react-hooks/exhaustive-deps

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    const name = e.dataTransfer.getData(DRAG_TYPE);
    const action = actions.find((a) => a.name === name);
    if (!action) return;
    const id = freshId(text, idBase(action.name));
    // dropped on a group's box: the step joins that (innermost) group
    const into = document
      .elementsFromPoint(e.clientX, e.clientY)
      .map((el) => (el as HTMLElement).closest?.('[data-group]')?.getAttribute('data-group'))
      .find((g): g is string => !!g);
    if (!into) dropAt.current[id] = flow.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    if (safe(() => addStep(text, id, newStepBody(action), into))) onSelection([id]);
  };

  const group = (kind: GroupKind) => {
    const id = freshId(text, 'group');
    if (safe(() => groupSteps(text, selection, kind, id))) onSelection([id]);
  };
  const groupWhy = groupProblem(text, selection);
  const single = selection.length === 1 ? graph.steps.find((s) => s.id === selection[0]) : undefined;
  const isGroup = single?.kind === 'parallel' || single?.kind === 'sequence';

  return (
    <>
      <div className="canvas-tools" role="toolbar" aria-label="Canvas tools">
        <button type="button" className="small" disabled={!!groupWhy} title={groupWhy ?? 'Put the selected steps in a parallel group'} onClick={() => group('parallel')}>
          Group as parallel
        </button>
        <button type="button" className="small" disabled={!!groupWhy} title={groupWhy ?? 'Put the selected steps in a sequence group'} onClick={() => group('sequence')}>
          Group as sequence
        </button>
        <button
          type="button"
          className="small secondary"
          disabled={!isGroup}
          title={isGroup ? `Put the steps of ${single!.id} back in its place` : 'Select a group to ungroup it'}
          onClick={() => safe(() => ungroupStep(text, single!.id)) && onSelection([])}
        >
          Ungroup
        </button>
        <button type="button" className="small secondary" onClick={tidy}>
          Tidy layout
        </button>
        <details className="pick">
          <summary>Select steps ({selection.length})</summary>
          <fieldset>
            <legend className="sr-only">Selected steps</legend>
            {graph.steps.map((s) => (
              <label key={s.id} className="check" style={{ paddingLeft: `${depthOf(graph, s.id) * 0.9}rem` }}>
                <input
                  type="checkbox"
                  checked={selected.has(s.id)}
                  onChange={(e) => onSelection(e.target.checked ? [...selection, s.id] : selection.filter((x) => x !== s.id))}
                />
                {s.id} <span className="muted">{s.uses}</span>
              </label>
            ))}
          </fieldset>
        </details>
        <span className="muted hint">Ctrl- or Shift-click to select several steps.</span>
      </div>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      <div className="canvas" onDragOver={(e) => e.preventDefault()} onDrop={onDrop} data-testid="canvas">
        <ReactFlow
          nodes={nodes}
          edges={edges}
          nodeTypes={nodeTypes}
          onNodesChange={onNodesChange}
          onEdgesChange={onEdgesChange}
          onConnect={onConnect}
          onPaneClick={() => onSelection([])}
          deleteKeyCode={['Delete']}
          multiSelectionKeyCode={['Control', 'Meta', 'Shift']}
          selectionKeyCode={null}
          fitView
          fitViewOptions={{ maxZoom: 1.2 }}
          proOptions={{ hideAttribution: true }}
        >
          <Background />
          <Controls />
          <MiniMap pannable zoomable ariaLabel="Mini map" />
        </ReactFlow>
      </div>
    </>
  );
}

function depthOf(graph: WorkflowGraph, id: string): number {
  const s = graph.steps.find((x) => x.id === id);
  return s?.group ? 1 + depthOf(graph, s.group) : 0;
}

/** The id a new step of an action starts from: `http`, `rabbitmq-publish`, `step` for shell. */
function idBase(name: string): string {
  return name === 'shell' ? 'step' : name.replace(/[^a-z0-9_-]+/gi, '-').toLowerCase();
}

function Palette({ actions, error, onAdd }: { actions: ActionInfo[]; error: string | null; onAdd: (a: ActionInfo) => void }) {
  const [filter, setFilter] = useState('');
  const f = filter.trim().toLowerCase();
  const shown = f ? actions.filter((a) => a.name.toLowerCase().includes(f) || a.description.toLowerCase().includes(f)) : actions;
  return (
    <aside className="palette" aria-labelledby="palette-title">
      <h2 id="palette-title">Actions</h2>
      <p className="muted">Drag onto the canvas, or press Enter to add.</p>
      {actions.length > 8 && (
        <label className="palette-filter">
          <span className="sr-only">Filter actions</span>
          <input type="search" placeholder="Filter actions" value={filter} onChange={(e) => setFilter(e.target.value)} />
        </label>
      )}
      <ErrorBox error={error && `Cannot list the server's actions: ${error}`} />
      {!actions.length && !error && <p aria-busy="true">Loading…</p>}
      <ul className="plain palette-list">
        {shown.map((a) => (
          <li key={a.name}>
            <button
              type="button"
              className="palette-item"
              draggable
              data-action={a.name}
              onDragStart={(e) => {
                e.dataTransfer.setData(DRAG_TYPE, a.name);
                e.dataTransfer.effectAllowed = 'copy';
              }}
              onClick={() => onAdd(a)}
              aria-label={`Add ${actionTitle(a.name)} step`}
              title={a.description}
            >
              <strong>{actionTitle(a.name)}</strong>
              <span className="muted">{a.source === 'builtin' ? a.name : `${a.name} · ${a.source}`}</span>
            </button>
          </li>
        ))}
      </ul>
    </aside>
  );
}

interface InvalidDetail {
  message: string;
  line?: number;
  path?: unknown[];
}

export default function EditorPage() {
  return (
    <ReactFlowProvider>
      <Editor />
    </ReactFlowProvider>
  );
}

function Editor() {
  const { name } = useParams();
  const navigate = useNavigate();
  const [text, setText] = useState<string>(name ? '' : newWorkflowText('my-workflow'));
  const [baseline, setBaseline] = useState<string>('');
  const [loadError, setLoadError] = useState<string | null>(null);
  const [tab, setTab] = useState<'canvas' | 'yaml'>('canvas');
  const [selection, setSelection] = useState<string[]>([]);
  const { actions, error: actionsError } = useActions();
  const [problems, setProblems] = useState<InvalidDetail[]>([]);
  const [deployError, setDeployError] = useState<string | null>(null);
  const location = useLocation();
  const [message, setMessage] = useState<string | null>((location.state as { message?: string } | null)?.message ?? null);
  const [review, setReview] = useState(false);
  const [historyKey, setHistoryKey] = useState(0);
  const [sourceKey, setSourceKey] = useState(0);
  const lastGood = useRef<WorkflowGraph | null>(null);
  const baselineRef = useRef(baseline);
  baselineRef.current = baseline;
  const deployedName = useRef<string | null>(null);
  const me = useMe();
  const [drafting, setDrafting] = useState(false);

  useEffect(() => {
    if (!name) {
      if (baselineRef.current !== '') {
        setText(newWorkflowText('my-workflow'));
        setBaseline('');
      }
      return;
    }
    if (name === deployedName.current) return; // just deployed from here: text is current
    api<WorkflowDetail>(`/api/v1/workflows/${encodeURIComponent(name)}`).then(
      (w) => {
        setText(w.source);
        setBaseline(w.source);
        setLoadError(null);
      },
      (e) => setLoadError(errorText(e)),
    );
  }, [name, sourceKey]); // eslint-disable-line react-hooks/exhaustive-deps

  const parsed = useMemo(() => graphFromText(text), [text]);
  if (parsed.graph) lastGood.current = parsed.graph;
  const graph = parsed.graph ?? lastGood.current;

  const stepErrors = useMemo(() => {
    const out: Record<string, string> = {};
    // what the browser can tell at once (required inputs, types, durations) …
    const known = new Set(actions.map((a) => a.name));
    if (parsed.graph && actions.length) {
      const all = allStepValues(text);
      for (const s of parsed.graph.steps) {
        const values = all[s.id];
        const problem = values && stepSummary(values, actions.find((a) => a.name === s.uses), known.has(s.uses));
        if (problem) out[s.id] = problem;
      }
    }
    // … and what the server said on the last deploy
    for (const p of problems) {
      const id = p.path ? stepForErrorPath(text, p.path) : undefined;
      if (id) out[id] = out[id] ? `${out[id]}; ${p.message}` : p.message;
    }
    return out;
  }, [problems, text, actions, parsed.graph]);

  const edit = (t: string) => {
    setText(t);
    setMessage(null);
  };
  const addFromPalette = (action: ActionInfo) => {
    const id = freshId(text, idBase(action.name));
    try {
      edit(addStep(text, id, newStepBody(action)));
      setSelection([id]);
    } catch (e) {
      setDeployError(errorText(e));
    }
  };

  const wfName = topValue(text, 'name');
  const diff = useMemo(() => (review ? lineDiff(baseline, text) : []), [review, baseline, text]);

  async function deploy() {
    setDeployError(null);
    try {
      const res = await api<{ name: string; version: number; created: boolean }>('/api/v1/workflows', {
        method: 'POST',
        headers: { 'Content-Type': 'application/yaml' },
        body: text,
      });
      setProblems([]);
      setReview(false);
      setBaseline(text);
      const done = res.created ? `Deployed ${res.name} version ${res.version}.` : `No change: version ${res.version} is current.`;
      setMessage(done);
      setHistoryKey((k) => k + 1);
      deployedName.current = res.name;
      if (res.name !== name) navigate(`/editor/${encodeURIComponent(res.name)}`, { replace: true, state: { message: done } });
    } catch (e) {
      setReview(false);
      if (e instanceof ApiError && Array.isArray(e.details)) setProblems(e.details as InvalidDetail[]);
      setDeployError(errorText(e));
    }
  }

  if (loadError) return <ErrorBox error={loadError} />;

  return (
    <section className="editor" aria-labelledby="editor-title">
      <div className="bar">
        <h1 id="editor-title">{name ? `Edit ${name}` : 'New workflow'}</h1>
        <div className="actions">
          <span className="muted">{text === baseline ? 'no changes' : 'unsaved changes'}</span>
          {hasRole(me, 'editor', '*') && (
            <button type="button" className="secondary" onClick={() => setDrafting(true)} aria-haspopup="dialog">
              Draft with AI…
            </button>
          )}
          <button type="button" onClick={() => setReview(true)} disabled={!parsed.graph || text === baseline}>
            Deploy…
          </button>
        </div>
      </div>
      {message && (
        <p role="status" className="ok">
          {message}
        </p>
      )}
      <ErrorBox error={deployError} />
      {problems.length > 0 && (
        <ul className="problems" aria-label="Validation problems">
          {problems.map((p, i) => (
            <li key={i}>
              {p.line ? `line ${p.line}: ` : ''}
              {p.message}
            </li>
          ))}
        </ul>
      )}
      {parsed.errors.length > 0 && (
        <div className="error" role="alert">
          YAML: {parsed.errors.map((e) => (e.line ? `line ${e.line}: ` : '') + e.message).join('; ')}
        </div>
      )}
      {drafting && (
        <DraftDialog
          namespace={topValue(text, 'namespace') || 'default'}
          replacesChanges={text !== baseline && text !== newWorkflowText('my-workflow')}
          onClose={() => setDrafting(false)}
          onUse={(source) => {
            setDrafting(false);
            setSelection([]);
            setProblems([]);
            edit(source);
            setMessage('Loaded the AI draft as an unsaved change: review it on the canvas or in the YAML tab, then deploy as usual.');
          }}
        />
      )}
      {review && (
        <div className="card review" role="dialog" aria-labelledby="review-title" aria-modal="false">
          <h2 id="review-title">Deploy {wfName}: changes against the current version</h2>
          <pre className="code diff" aria-label="diff">
            {diff.map((l, i) => (
              <div key={i} className={l.kind === '+' ? 'add' : l.kind === '-' ? 'del' : ''}>
                {l.kind} {l.text}
              </div>
            ))}
          </pre>
          <div className="actions">
            <button type="button" onClick={deploy} autoFocus>
              Confirm deploy
            </button>
            <button type="button" className="secondary" onClick={() => setReview(false)}>
              Cancel
            </button>
          </div>
        </div>
      )}
      <div className="editor-grid">
        <Palette actions={actions} error={actionsError} onAdd={addFromPalette} />
        <div className="editor-main">
          <div role="tablist" aria-label="Editor view" className="tabs">
            <button type="button" role="tab" id="tab-canvas" aria-selected={tab === 'canvas'} aria-controls="panel-canvas" onClick={() => setTab('canvas')}>
              Canvas
            </button>
            <button type="button" role="tab" id="tab-yaml" aria-selected={tab === 'yaml'} aria-controls="panel-yaml" onClick={() => setTab('yaml')}>
              YAML
            </button>
          </div>
          {tab === 'canvas' ? (
            <div role="tabpanel" id="panel-canvas" aria-labelledby="tab-canvas">
              {graph && <Canvas graph={graph} text={text} onText={edit} selection={selection} onSelection={setSelection} stepErrors={stepErrors} actions={actions} />}
            </div>
          ) : (
            <div role="tabpanel" id="panel-yaml" aria-labelledby="tab-yaml">
              <YamlEditor value={text} onChange={edit} label="Workflow YAML" complete={(t, pos) => completionsAt(t, pos, actions)} />
            </div>
          )}
        </div>
        <aside className="side" aria-label="Properties">
          {selection.length === 1 && stepValues(text, selection[0]) ? (
            <StepPanel key={selection[0]} text={text} stepId={selection[0]} stepIds={graph?.steps.map((s) => s.id) ?? []} actions={actions} onText={edit} onSelect={setSelection} />
          ) : selection.length > 1 ? (
            <div className="panel-form" aria-label="Selection">
              <h2>{selection.length} steps selected</h2>
              <p>{selection.join(', ')}</p>
              <p className="muted">{groupProblem(text, selection) ?? 'Group them as parallel or sequence with the buttons above the canvas.'}</p>
            </div>
          ) : (
            <form className="panel-form" onSubmit={(e) => e.preventDefault()} aria-label="Workflow">
              <h2>Workflow</h2>
              <Draft id="wf-name" label="Workflow name" value={wfName} onCommit={(v) => edit(setTopField(text, 'name', v.trim()))} />
              <Draft id="wf-description" label="Description" value={topValue(text, 'description')} onCommit={(v) => edit(setTopField(text, 'description', v))} />
              <Draft id="wf-namespace" label="Namespace" value={topValue(text, 'namespace')} onCommit={(v) => edit(setTopField(text, 'namespace', v.trim()))} />
              <p className="muted">Select a step on the canvas to edit it. Connect a step's right handle to another's left handle to make it wait (needs).</p>
            </form>
          )}
        </aside>
      </div>
      {name && <VersionHistory key={`${name}-${historyKey}`} name={name} onChanged={() => {
            deployedName.current = null;
            setSourceKey((k) => k + 1);
          }} />}
    </section>
  );
}
