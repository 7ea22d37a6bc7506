import { FormEvent, useState } from 'react';
import { api } from '../api';
import { ErrorBox, errorText, RunSummary, WorkflowInput } from '../util';

function initial(input: WorkflowInput): string | boolean {
  if (input.type === 'boolean') return input.default === true;
  if (input.default === undefined || input.default === null || input.secret) return '';
  return typeof input.default === 'object' ? JSON.stringify(input.default) : String(input.default);
}

/** Typed inputs -> JSON values; returns the problems found in the browser. */
export function convertInputs(inputs: WorkflowInput[], values: Record<string, string | boolean>) {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const input of inputs) {
    const v = values[input.name];
    if (input.type === 'boolean') {
      out[input.name] = Boolean(v);
      continue;
    }
    const text = String(v ?? '');
    if (text === '') {
      if (input.required && input.default === undefined) problems.push(`${input.name} is required`);
      continue;
    }
    if (input.type === 'integer' || input.type === 'number') {
      const n = Number(text);
      if (Number.isNaN(n) || (input.type === 'integer' && !Number.isInteger(n))) problems.push(`${input.name}: expected ${input.type === 'integer' ? 'an integer' : 'a number'}`);
      else out[input.name] = n;
    } else if (input.type === 'list' || input.type === 'array' || input.type === 'object') {
      try {
        out[input.name] = JSON.parse(text);
      } catch {
        problems.push(`${input.name}: expected JSON`);
      }
    } else out[input.name] = text;
  }
  return { inputs: out, problems };
}

export default function StartRunForm({
  workflow,
  inputs,
  onStarted,
}: {
  workflow: string;
  inputs: WorkflowInput[];
  onStarted: (run: RunSummary) => void;
}) {
  const [values, setValues] = useState<Record<string, string | boolean>>(() => Object.fromEntries(inputs.map((i) => [i.name, initial(i)])));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const { inputs: body, problems } = convertInputs(inputs, values);
    if (problems.length) {
      setError(problems.join('; '));
      return;
    }
    setBusy(true);
    try {
      const run = await api<RunSummary>(`/api/v1/workflows/${encodeURIComponent(workflow)}/runs`, {
        method: 'POST',
        json: { inputs: body },
      });
      setError(null);
      onStarted(run);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="card" onSubmit={submit} aria-labelledby="start-title">
      <h2 id="start-title">Start a run</h2>
      {inputs.length === 0 && <p className="muted">This workflow takes no inputs.</p>}
      {inputs.map((input) => {
        const id = `input-${input.name}`;
        const label = (
          <>
            {input.name}
            {input.required && input.default === undefined ? ' (required)' : ''}
            {input.description ? <span className="muted"> — {input.description}</span> : null}
          </>
        );
        if (input.type === 'boolean')
          return (
            <label key={input.name} className="check" htmlFor={id}>
              <input id={id} type="checkbox" checked={Boolean(values[input.name])} onChange={(e) => setValues({ ...values, [input.name]: e.target.checked })} />
              {label}
            </label>
          );
        if (input.enum && input.enum.length)
          return (
            <label key={input.name} htmlFor={id}>
              {label}
              <select id={id} value={String(values[input.name])} onChange={(e) => setValues({ ...values, [input.name]: e.target.value })}>
                {!input.required && <option value="">(default)</option>}
                {input.enum.map((v) => (
                  <option key={String(v)} value={String(v)}>
                    {String(v)}
                  </option>
                ))}
              </select>
            </label>
          );
        return (
          <label key={input.name} htmlFor={id}>
            {label}
            <input
              id={id}
              type={input.secret ? 'password' : input.type === 'integer' || input.type === 'number' ? 'number' : 'text'}
              step={input.type === 'number' ? 'any' : undefined}
              value={String(values[input.name] ?? '')}
              required={input.required && input.default === undefined}
              onChange={(e) => setValues({ ...values, [input.name]: e.target.value })}
            />
          </label>
        );
      })}
      <ErrorBox error={error} />
      <button type="submit" disabled={busy}>
        {busy ? 'Starting…' : 'Start run'}
      </button>
    </form>
  );
}
