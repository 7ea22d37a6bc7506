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
import { DragEvent, KeyboardEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useLocation, useNavigate, useParams } from 'react-router-dom';
import { api, ApiError } from '../api';
import { VersionHistory } from '../pages/VersionHistory';
import { ErrorBox, errorText, WorkflowDetail } from '../util';
import { ACTIONS, actionFor, type ActionField } from './actions';
import { lineDiff } from './diff';
import { layoutGraph } from './layout';
import { nodeTypes, type StepFlowNode } from './StepNode';
import YamlEditor from './YamlEditor';
import {
  addStep,
  connect,
  disconnect,
  freshId,
  graphFromText,
  newWorkflowText,
  removeStep,
  renameStep,
  setStepField,
  setTopField,
  stepForErrorPath,
  stepValues,
  topValue,
  type WorkflowGraph,
} from './yamlModel';

const DRAG_TYPE = 'application/plait-action';

/** An input that commits on blur or Enter (so a half-typed id never renames a step). */
function Draft({
  id,
  label,
  value,
  onCommit,
  multiline,
  type,
}: {
  id: string;
  label: string;
  value: string;
  onCommit: (v: string) => void;
  multiline?: boolean;
  type?: string;
}) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  const commit = () => {
    if (draft !== value) onCommit(draft);
  };
  const onKey = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && !multiline) {
      e.preventDefault();
      commit();
    }
  };
  return (
    <label htmlFor={id}>
      {label}
      {multiline ? (
        <textarea id={id} rows={4} value={draft} onChange={(e) => setDraft(e.target.value)} onBlur={commit} />
      ) : (
        <input id={id} type={type ?? 'text'} value={draft} onChange={(e) => setDraft(e.target.value)} onBlur={commit} onKeyDown={onKey} />
      )}
    </label>
  );
}

function scalarText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.join(', ');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function StepPanel({ text, stepId, onText, onSelect }: { text: string; stepId: string; onText: (t: string) => void; onSelect: (id: string | null) => void }) {
  const values = stepValues(text, stepId);
  if (!values) return null;
  const uses = typeof values.uses === 'string' ? values.uses : values.parallel ? 'parallel' : values.sequence ? 'sequence' : 'shell';
  const def = actionFor(uses);
  const withValues = (values.with ?? {}) as Record<string, unknown>;
  const set = (key: string | string[], v: unknown) => {
    try {
      onText(setStepField(text, stepId, key, v));
    } catch (e) {
      window.alert(errorText(e));
    }
  };
  const fieldValue = (f: ActionField) => (uses === 'shell' && f.name === 'command' && values.run !== undefined ? values.run : withValues[f.name]);
  const setField = (f: ActionField, raw: string) => {
    let v: unknown = raw;
    if (f.kind === 'number') v = raw === '' ? undefined : Number(raw);
    if (f.kind === 'boolean') v = raw === 'true' ? true : raw === 'false' ? false : undefined;
    if (f.kind === 'list') v = raw.split(',').map((x) => x.trim()).filter(Boolean);
    if (uses === 'shell' && f.name === 'command' && (values.run !== undefined || values.with === undefined)) set('run', v);
    else set(['with', f.name], v);
  };
  const retries = values.retries;
  return (
    <form className="panel-form" onSubmit={(e) => e.preventDefault()} aria-label={`Step ${stepId}`}>
      <h2>Step {stepId}</h2>
      <p className="muted">{def ? `${def.title}: ${def.description}` : `uses: ${uses}`}</p>
      <Draft
        id="step-id"
        label="Step id"
        value={stepId}
        onCommit={(v) => {
          try {
            onText(renameStep(text, stepId, v.trim()));
            onSelect(v.trim());
          } catch (e) {
            window.alert(errorText(e));
          }
        }}
      />
      <Draft id="step-name" label="Display name" value={scalarText(values.name)} onCommit={(v) => set('name', v)} />
      {def &&
        def.fields.map((f) =>
          f.kind === 'select' || f.kind === 'boolean' ? (
            <label key={f.name} htmlFor={`with-${f.name}`}>
              {f.label}
              <select id={`with-${f.name}`} value={scalarText(fieldValue(f))} onChange={(e) => setField(f, e.target.value)}>
                <option value="">(default)</option>
                {(f.kind === 'boolean' ? ['true', 'false'] : f.options ?? []).map((o) => (
                  <option key={o} value={o}>
                    {o}
                  </option>
                ))}
              </select>
            </label>
          ) : (
            <Draft
              key={f.name}
              id={`with-${f.name}`}
              label={f.label + (f.required ? ' (required)' : '')}
              value={scalarText(fieldValue(f))}
              multiline={f.kind === 'multiline'}
              type={f.kind === 'number' ? 'number' : undefined}
              onCommit={(v) => setField(f, v)}
            />
          ),
        )}
      <Draft id="step-if" label="Run only if (condition)" value={scalarText(values.if)} onCommit={(v) => set('if', v)} />
      <Draft
        id="step-needs"
        label="Needs (step ids, comma-separated; empty = default order)"
        value={scalarText(values.needs)}
        onCommit={(v) => set('needs', v.trim() === '' ? undefined : v.split(',').map((x) => x.trim()).filter(Boolean))}
      />
      {retries !== undefined && typeof retries === 'object' ? (
        <p className="muted">Retries: a policy (edit it in the YAML tab).</p>
      ) : (
        <Draft id="step-retries" label="Retries" type="number" value={scalarText(retries)} onCommit={(v) => set('retries', v === '' ? undefined : Number(v))} />
      )}
      <Draft id="step-timeout" label="Timeout (e.g. 5m)" value={scalarText(values.timeout)} onCommit={(v) => set('timeout', v)} />
      <label htmlFor="step-on-error">
        On error
        <select id="step-on-error" value={scalarText(values.on_error)} onChange={(e) => set('on_error', e.target.value)}>
          <option value="">fail (default)</option>
          <option value="continue">continue</option>
          <option value="retry">retry</option>
          <option value="fail">fail</option>
        </select>
      </label>
      <button
        type="button"
        className="danger"
        onClick={() => {
          onText(removeStep(text, stepId));
          onSelect(null);
        }}
      >
        Delete step
      </button>
    </form>
  );
}

function Canvas({
  graph,
  text,
  onText,
  selected,
  onSelect,
  stepErrors,
}: {
  graph: WorkflowGraph;
  text: string;
  onText: (t: string) => void;
  selected: string | null;
  onSelect: (id: string | null) => void;
  stepErrors: Record<string, string>;
}) {
  const flow = useReactFlow();
  const layout = useMemo(() => layoutGraph(graph), [graph]);
  const dropAt = useRef<Record<string, { x: number; y: number }>>({});
  const [nodes, setNodes] = useState<StepFlowNode[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);

  useEffect(() => {
    setNodes((prev) =>
      graph.nodes.map((n) => {
        const old = prev.find((p) => p.id === n.id);
        return {
          ...(old ?? {}),
          id: n.id,
          type: 'step',
          position: old?.position ?? dropAt.current[n.id] ?? layout[n.id],
          selected: n.id === selected,
          data: { label: n.id, uses: n.uses, group: n.group, error: stepErrors[n.id] },
        } as StepFlowNode;
      }),
    );
    setEdges((prev) =>
      graph.edges.map((e) => {
        const id = `${e.source}->${e.target}`;
        return {
          id,
          source: e.source,
          target: e.target,
          selected: prev.find((p) => p.id === id)?.selected,
          className: e.implicit ? 'implicit' : '',
          ariaLabel: `${e.source} to ${e.target}`,
        };
      }),
    );
  }, [graph, layout, selected, stepErrors]);

  const safe = (fn: () => string) => {
    try {
      onText(fn());
    } catch (e) {
      window.alert(errorText(e));
    }
  };

  const onNodesChange = useCallback(
    (changes: NodeChange<StepFlowNode>[]) => {
      const removed = changes.filter((c) => c.type === 'remove').map((c) => (c as { id: string }).id);
      const picked = changes.find((c) => c.type === 'select' && c.selected) as { id: string } | undefined;
      setNodes((nds) => applyNodeChanges(changes.filter((c) => c.type !== 'remove'), nds));
      if (picked) onSelect(picked.id);
      if (removed.length) {
        let t = text;
        for (const id of removed) t = removeStep(t, id);
        onText(t);
        onSelect(null);
      }
    },
    [text, onText, onSelect],
  );
  const onEdgesChange = useCallback(
    (changes: EdgeChange[]) => {
      const removed = changes.filter((c) => c.type === 'remove').map((c) => (c as { id: string }).id);
      setEdges((eds) => applyEdgeChanges(changes.filter((c) => c.type !== 'remove'), eds));
      if (removed.length) {
        let t = text;
        for (const id of removed) {
          const [s, tg] = id.split('->');
          t = disconnect(t, s, tg);
        }
        onText(t);
      }
    },
    [text, onText],
  );
  const onConnect = useCallback((c: Connection) => safe(() => connect(text, c.source, c.target)), [text]); // eslint-disable-line react-hooks/exhaustive-deps

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    const uses = e.dataTransfer.getData(DRAG_TYPE);
    const def = actionFor(uses);
    if (!def) return;
    const id = freshId(text, def.uses === 'shell' ? 'step' : def.uses);
    dropAt.current[id] = flow.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    safe(() => addStep(text, id, structuredClone(def.template)));
    onSelect(id);
  };

  return (
    <div className="canvas" onDragOver={(e) => e.preventDefault()} onDrop={onDrop} data-testid="canvas">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        onNodesChange={onNodesChange}
        onEdgesChange={onEdgesChange}
        onConnect={onConnect}
        onPaneClick={() => onSelect(null)}
        deleteKeyCode={['Delete']}
        fitView
        fitViewOptions={{ maxZoom: 1.2 }}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls />
        <MiniMap pannable zoomable ariaLabel="Mini map" />
      </ReactFlow>
    </div>
  );
}

function Palette({ onAdd }: { onAdd: (uses: string) => void }) {
  return (
    <aside className="palette" aria-labelledby="palette-title">
      <h2 id="palette-title">Actions</h2>
      <p className="muted">Drag onto the canvas, or press Enter to add.</p>
      <ul className="plain">
        {ACTIONS.map((a) => (
          <li key={a.uses}>
            <button
              type="button"
              className="palette-item"
              draggable
              data-action={a.uses}
              onDragStart={(e) => {
                e.dataTransfer.setData(DRAG_TYPE, a.uses);
                e.dataTransfer.effectAllowed = 'copy';
              }}
              onClick={() => onAdd(a.uses)}
              aria-label={`Add ${a.title} step`}
              title={a.description}
            >
              <strong>{a.title}</strong>
              <span className="muted">{a.uses}</span>
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
  const [selected, setSelected] = useState<string | null>(null);
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
    for (const p of problems) {
      const id = p.path ? stepForErrorPath(text, p.path) : undefined;
      if (id) out[id] = out[id] ? `${out[id]}; ${p.message}` : p.message;
    }
    return out;
  }, [problems, text]);

  const edit = (t: string) => {
    setText(t);
    setMessage(null);
  };
  const addFromPalette = (uses: string) => {
    const def = actionFor(uses)!;
    const id = freshId(text, def.uses === 'shell' ? 'step' : def.uses);
    try {
      edit(addStep(text, id, structuredClone(def.template)));
      setSelected(id);
    } catch (e) {
      window.alert(errorText(e));
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
        <Palette onAdd={addFromPalette} />
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
              {graph && <Canvas graph={graph} text={text} onText={edit} selected={selected} onSelect={setSelected} stepErrors={stepErrors} />}
            </div>
          ) : (
            <div role="tabpanel" id="panel-yaml" aria-labelledby="tab-yaml">
              <YamlEditor value={text} onChange={edit} label="Workflow YAML" />
            </div>
          )}
        </div>
        <aside className="side" aria-label="Properties">
          {selected && stepValues(text, selected) ? (
            <StepPanel key={selected} text={text} stepId={selected} onText={edit} onSelect={setSelected} />
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
