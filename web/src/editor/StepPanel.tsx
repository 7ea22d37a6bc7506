// The side panel: the selected step's form (generated from its action's input schema
// plus the step fields if/needs/retries/timeout/on_error), a group's panel, or the
// actions on a multi-selection. Every change is one targeted edit of the YAML document.
import { type KeyboardEvent, useEffect, useState } from 'react';
import { errorText } from '../util';
import { type ActionInfo, actionTitle, usesOf } from './actions';
import { setGroupKind, ungroupStep } from './groups';
import { SchemaForm } from './SchemaForm';
import { fieldsFor, type JsonSchema, validateForm, validateWith } from './schemaForm';
import { removeStep, renameStep, setStepField, stepValues } from './yamlModel';

const DURATION: JsonSchema = {
  anyOf: [
    { type: 'number', minimum: 0 },
    { type: 'string', pattern: '^\\s*(\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)?\\s*)+$' },
  ],
};

/** The retry policy of the workflow format (RetrySpec in plait.model.spec). */
export const RETRY_POLICY: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    max: { type: 'integer', minimum: 0, default: 3, title: 'Retries (max)', description: 'Retries after the first attempt: 2 allows three attempts.' },
    backoff: { enum: ['exponential', 'linear', 'constant'], default: 'exponential', title: 'Backoff' },
    initial: { ...DURATION, default: '1s', title: 'First delay' },
    factor: { type: 'number', minimum: 1, default: 2, title: 'Factor' },
    max_delay: { ...DURATION, default: '5m', title: 'Longest delay' },
    jitter: { type: 'boolean', default: false, title: 'Jitter', description: 'Randomise delays so retries of many runs spread out.' },
  },
};

/** The step fields every step has, besides its action's inputs. */
const STEP_FIELDS: JsonSchema = {
  type: 'object',
  properties: {
    if: { anyOf: [{ type: 'string' }, { type: 'boolean' }], title: 'Run only if (condition)', description: "An expression, e.g. inputs.environment == 'production', or failure() / always()." },
    timeout: { ...DURATION, title: 'Timeout (e.g. 5m)', description: 'Seconds, or text like 500ms, 30s, 5m, 1h30m.' },
  },
};
const STEP_FORM = fieldsFor(STEP_FIELDS);
const RETRY_FORM = fieldsFor(RETRY_POLICY, RETRY_POLICY, ['retries']);

/** Problems of a step's action inputs (`with:`, and `run:` for the shell shorthand). */
export function inputProblems(values: Record<string, unknown>, action: ActionInfo | undefined): Record<string, string> {
  if (!action) return {};
  const withValues = (values.with ?? {}) as Record<string, unknown>;
  const merged = action.name === 'shell' && values.run !== undefined ? { ...withValues, command: values.run } : withValues;
  return validateWith(action.input_schema, merged);
}

/** One line saying what is wrong with a step (for its node on the canvas), or undefined. */
export function stepSummary(values: Record<string, unknown>, action: ActionInfo | undefined, known: boolean): string | undefined {
  const uses = usesOf(values);
  if (!known && uses !== 'parallel' && uses !== 'sequence') return `unknown action ${uses}`;
  const problems = { ...inputProblems(values, action), ...validateForm(STEP_FORM, values, STEP_FIELDS, true) };
  const first = Object.entries(problems)[0];
  if (!first) return undefined;
  return first[0] === '_' ? first[1] : `${first[0]}: ${first[1]}`;
}

/** An input that commits on blur or Enter (so a half-typed id never renames a step). */
export function Draft({ id, label, value, onCommit, help, error }: { id: string; label: string; value: string; onCommit: (v: string) => void; help?: string; error?: string }) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  const commit = () => {
    if (draft !== value) onCommit(draft);
  };
  const onKey = (e: KeyboardEvent) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      commit();
    }
  };
  const described = [help ? `${id}-help` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div className={`field${error ? ' has-error' : ''}`}>
      <label htmlFor={id}>{label}</label>
      <input id={id} value={draft} onChange={(e) => setDraft(e.target.value)} onBlur={commit} onKeyDown={onKey} aria-describedby={described} aria-invalid={error ? true : undefined} />
      {help && (
        <small id={`${id}-help`} className="help">
          {help}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} className="field-error">
          {error}
        </small>
      )}
    </div>
  );
}

function list(v: unknown): string {
  if (v === undefined || v === null) return '';
  return Array.isArray(v) ? v.join(', ') : String(v);
}

interface PanelProps {
  text: string;
  stepId: string;
  stepIds: string[];
  actions: ActionInfo[];
  onText: (t: string) => void;
  onSelect: (ids: string[]) => void;
}

function useEditor(text: string, stepId: string, onText: (t: string) => void) {
  const [problem, setProblem] = useState<string | null>(null);
  const apply = (fn: () => string) => {
    try {
      onText(fn());
      setProblem(null);
    } catch (e) {
      setProblem(errorText(e));
    }
  };
  const set = (key: string | string[], v: unknown) => apply(() => setStepField(text, stepId, key, v));
  return { problem, apply, set };
}

/** id, name and needs: what steps and groups share. */
function Identity({ text, stepId, stepIds, values, onText, onSelect, apply, set }: PanelProps & { values: Record<string, unknown> } & ReturnType<typeof useEditor>) {
  const unknown = Array.isArray(values.needs) ? (values.needs as unknown[]).map(String).filter((x) => !stepIds.includes(x)) : [];
  void onText;
  return (
    <>
      <Draft
        id="step-id"
        label="Step id"
        value={stepId}
        onCommit={(v) =>
          apply(() => {
            const next = renameStep(text, stepId, v.trim());
            onSelect([v.trim()]);
            return next;
          })
        }
      />
      <Draft id="step-name" label="Display name" value={list(values.name)} onCommit={(v) => set('name', v)} />
      <Draft
        id="step-needs"
        label="Needs (step ids, comma-separated; empty = default order)"
        value={list(values.needs)}
        error={unknown.length ? `no step ${unknown.join(', ')}` : undefined}
        onCommit={(v) =>
          set(
            'needs',
            v.trim() === ''
              ? undefined
              : v
                  .split(',')
                  .map((x) => x.trim())
                  .filter(Boolean),
          )
        }
      />
    </>
  );
}

function Retries({ values, set }: { values: Record<string, unknown>; set: (key: string | string[], v: unknown) => void }) {
  const retries = values.retries;
  const mode = retries === undefined || retries === null ? 'none' : typeof retries === 'object' ? 'policy' : 'count';
  const countError = mode === 'count' && !(typeof retries === 'number' && Number.isInteger(retries) && retries >= 0) ? 'expected a whole number, 0 or more' : undefined;
  const policyErrors = mode === 'policy' ? validateForm(RETRY_FORM, retries as Record<string, unknown>, RETRY_POLICY) : {};
  return (
    <fieldset className="schema-group">
      <legend>Retries</legend>
      <div className="field">
        <label htmlFor="step-retries-mode">Retry a failed attempt</label>
        <select
          id="step-retries-mode"
          value={mode}
          onChange={(e) => {
            const m = e.target.value;
            if (m === 'none') set('retries', undefined);
            else if (m === 'count') set('retries', typeof retries === 'object' && retries ? ((retries as { max?: number }).max ?? 3) : 2);
            else set('retries', { max: typeof retries === 'number' ? retries : 3, backoff: 'exponential', initial: '1s' });
          }}
        >
          <option value="none">no (default)</option>
          <option value="count">a number of times</option>
          <option value="policy">with a policy (backoff, delays)</option>
        </select>
      </div>
      {mode === 'count' && <Draft id="step-retries" label="Retries" value={list(retries)} error={countError} onCommit={(v) => set('retries', v.trim() === '' ? undefined : /^\d+$/.test(v.trim()) ? Number(v) : v)} />}
      {mode === 'policy' && (
        <SchemaForm fields={RETRY_FORM} values={retries as Record<string, unknown>} errors={policyErrors} onSet={(path, v) => set(path, v)} idPrefix="step" />
      )}
    </fieldset>
  );
}

export function StepPanel(props: PanelProps) {
  const { text, stepId, actions, onText, onSelect } = props;
  const ed = useEditor(text, stepId, onText);
  const values = stepValues(text, stepId);
  if (!values) return null;
  const uses = usesOf(values);
  if (uses === 'parallel' || uses === 'sequence') return <GroupPanel {...props} values={values} kind={uses} ed={ed} />;
  const action = actions.find((a) => a.name === uses);
  const shellRun = uses === 'shell' && (values.run !== undefined || values.with === undefined);
  const withValues = (values.with ?? {}) as Record<string, unknown>;
  const fields = action ? fieldsFor(action.input_schema, action.input_schema, ['with']) : [];
  const inputErrors = Object.fromEntries(Object.entries(inputProblems(values, action)).map(([k, v]) => [k === '_' ? '_' : `with.${k}`, v]));
  const stepErrors = validateForm(STEP_FORM, values, STEP_FIELDS, true);
  return (
    <form className="panel-form" onSubmit={(e) => e.preventDefault()} aria-label={`Step ${stepId}`}>
      <h2>Step {stepId}</h2>
      <p className="muted">
        {action ? (
          <>
            <strong>{actionTitle(action.name)}</strong> ({action.name} {action.version}): {action.description}
          </>
        ) : (
          `uses: ${uses}`
        )}
      </p>
      {ed.problem && (
        <p className="error" role="alert">
          {ed.problem}
        </p>
      )}
      <Identity {...props} values={values} {...ed} />
      <fieldset className="schema-group">
        <legend>Inputs{action ? '' : ' (with)'}</legend>
        {!action && actions.length > 0 && <p className="field-error">The server has no action {uses}: edit its inputs in the YAML tab.</p>}
        {inputErrors._ && <p className="field-error">{inputErrors._}</p>}
        {action && fields.length === 0 && <p className="muted">This action takes no inputs.</p>}
        <SchemaForm
          fields={fields}
          values={withValues}
          errors={inputErrors}
          idPrefix="step"
          override={(f) => (shellRun && f.name === 'command' ? values.run : undefined)}
          onSet={(path, v) => {
            if (shellRun && path.length === 2 && path[1] === 'command') ed.set('run', v);
            else ed.set(path, v);
          }}
        />
      </fieldset>
      <SchemaForm fields={STEP_FORM} values={values} errors={stepErrors} idPrefix="step" onSet={(path, v) => ed.set(path, v)} />
      <Retries values={values} set={ed.set} />
      <div className="field">
        <label htmlFor="step-on-error">On error</label>
        <select id="step-on-error" value={list(values.on_error)} onChange={(e) => ed.set('on_error', e.target.value)} aria-describedby="step-on-error-help">
          <option value="">fail (default)</option>
          <option value="continue">continue</option>
          <option value="retry">retry</option>
          <option value="fail">fail</option>
        </select>
        <small id="step-on-error-help" className="help">
          fail: stop the run; continue: the run goes on; retry: retry under the policy, then fail.
        </small>
      </div>
      <button
        type="button"
        className="danger"
        onClick={() => {
          onText(removeStep(text, stepId));
          onSelect([]);
        }}
      >
        Delete step
      </button>
    </form>
  );
}

function GroupPanel({ text, stepId, onText, onSelect, values, kind, ed, ...rest }: PanelProps & { values: Record<string, unknown>; kind: 'parallel' | 'sequence'; ed: ReturnType<typeof useEditor> }) {
  const children = Array.isArray(values[kind]) ? (values[kind] as unknown[]).length : 0;
  return (
    <form className="panel-form" onSubmit={(e) => e.preventDefault()} aria-label={`Group ${stepId}`}>
      <h2>Group {stepId}</h2>
      <p className="muted">
        {children} step{children === 1 ? '' : 's'} run {kind === 'parallel' ? 'at the same time' : 'one after the other'}.
      </p>
      {ed.problem && (
        <p className="error" role="alert">
          {ed.problem}
        </p>
      )}
      <Identity {...rest} text={text} stepId={stepId} onText={onText} onSelect={onSelect} values={values} {...ed} />
      <div className="field">
        <label htmlFor="group-kind">Steps run</label>
        <select id="group-kind" value={kind} onChange={(e) => ed.apply(() => setGroupKind(text, stepId, e.target.value as 'parallel' | 'sequence'))}>
          <option value="parallel">in parallel</option>
          <option value="sequence">in sequence</option>
        </select>
      </div>
      <SchemaForm fields={STEP_FORM} values={values} errors={validateForm(STEP_FORM, values, STEP_FIELDS, true)} idPrefix="step" onSet={(path, v) => ed.set(path, v)} />
      <div className="actions">
        <button
          type="button"
          onClick={() =>
            ed.apply(() => {
              const next = ungroupStep(text, stepId);
              onSelect([]);
              return next;
            })
          }
        >
          Ungroup
        </button>
        <button
          type="button"
          className="danger"
          onClick={() => {
            if (!window.confirm(`Delete group ${stepId} and its ${children} steps?`)) return;
            onText(removeStep(text, stepId));
            onSelect([]);
          }}
        >
          Delete group
        </button>
      </div>
    </form>
  );
}
