// "Draft with AI": a sentence and an LLM connection in, a workflow draft out — shown
// read-only with the server's validation problems marked on their lines and the tokens it
// cost — and, if the author wants it, loaded into the editor as an unsaved change. Nothing
// is deployed from here.
import { type KeyboardEvent, useEffect, useId, useMemo, useRef, useState } from 'react';
import { Link } from 'react-router-dom';
import { createDraft, type DraftResult, qs } from '../api';
import type { Connection } from '../pages/connections';
import { ErrorBox, type Page, useApi } from '../util';
import { connectionLabel, draftErrorText, llmConnections, problemLines, problemText, promptProblem, usageText } from './draft';

const FOCUSABLE = 'a[href], button:not([disabled]), textarea:not([disabled]), input:not([disabled]), select:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** Tab and Shift-Tab stay inside `box`, going round from the last element to the first. */
function trapTab(e: KeyboardEvent, box: HTMLElement | null) {
  if (e.key !== 'Tab' || !box) return;
  const items = [...box.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((el) => !el.closest('[hidden]'));
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  const here = document.activeElement;
  if (e.shiftKey && (here === first || !box.contains(here))) {
    e.preventDefault();
    last.focus();
  } else if (!e.shiftKey && (here === last || !box.contains(here))) {
    e.preventDefault();
    first.focus();
  }
}

export default function DraftDialog({
  namespace: initialNamespace,
  replacesChanges,
  onUse,
  onClose,
}: {
  /** The namespace of the workflow being edited: the draft's, and where connections are looked for. */
  namespace: string;
  /** The editor holds changes that using the draft would replace. */
  replacesChanges: boolean;
  onUse: (source: string) => void;
  onClose: () => void;
}) {
  const id = useId();
  const box = useRef<HTMLDivElement>(null);
  const promptRef = useRef<HTMLTextAreaElement>(null);
  const opener = useRef<Element | null>(document.activeElement);
  const [prompt, setPrompt] = useState('');
  const [namespace, setNamespace] = useState(initialNamespace || 'default');
  const [picked, setPicked] = useState('');
  const [model, setModel] = useState('');
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [draft, setDraft] = useState<DraftResult | null>(null);
  const gone = useRef(false);

  const list = useApi<Page<Connection>>(`/api/v1/connections${qs({ limit: 500 })}`);
  const options = useMemo(() => llmConnections(list.data?.items ?? [], namespace.trim() || 'default'), [list.data, namespace]);
  const connection = options.some((c) => c.name === picked) ? picked : (options[0]?.name ?? '');

  useEffect(() => {
    promptRef.current?.focus();
    gone.current = false;
    const back = opener.current;
    return () => {
      gone.current = true;
      if (back instanceof HTMLElement) back.focus();
    };
  }, []);

  const generate = async (e: React.FormEvent) => {
    e.preventDefault();
    const why = promptProblem(prompt) ?? (connection ? null : 'Choose an LLM connection.');
    setProblem(why);
    if (why) return;
    setBusy(true);
    setError(null);
    try {
      const result = await createDraft({ prompt: prompt.trim(), connection, namespace: namespace.trim() || 'default', model: model.trim() || null });
      if (!gone.current) setDraft(result);
    } catch (err) {
      if (!gone.current) setError(draftErrorText(err));
    } finally {
      if (!gone.current) setBusy(false);
    }
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      onClose();
    } else trapTab(e, box.current);
  };

  const title = `${id}-title`;
  const help = `${id}-help`;
  return (
    <div className="modal-backdrop">
      <div ref={box} className="card modal draft-dialog" role="dialog" aria-modal="true" aria-labelledby={title} aria-describedby={help} onKeyDown={onKeyDown}>
        <div className="bar">
          <h2 id={title}>Draft a workflow with AI</h2>
          <button type="button" className="small secondary" onClick={onClose} aria-label="Close the draft dialog">
            ✕
          </button>
        </div>
        <p id={help} className="muted">
          Describe the workflow in a sentence or two. An LLM connection writes a draft, the server checks it like any deploy, and you decide whether to load it
          into the editor. Nothing is deployed from here.
        </p>
        <form onSubmit={generate} aria-label="Draft request" noValidate>
          <label>
            Describe the workflow
            <textarea
              ref={promptRef}
              rows={4}
              value={prompt}
              onChange={(e) => setPrompt(e.target.value)}
              placeholder="every night back up the database and tell #ops if it fails"
              aria-invalid={problem && !prompt.trim() ? true : undefined}
            />
          </label>
          <div className="inline-form">
            <label>
              Namespace
              <input value={namespace} onChange={(e) => setNamespace(e.target.value)} size={14} />
            </label>
            {options.length > 0 && (
              <label>
                LLM connection
                <select value={connection} onChange={(e) => setPicked(e.target.value)}>
                  {options.map((c) => (
                    <option key={`${c.namespace}/${c.name}`} value={c.name}>
                      {connectionLabel(c)}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <label>
              Model (optional)
              <input value={model} onChange={(e) => setModel(e.target.value)} placeholder="the connection's default" size={22} />
            </label>
          </div>
          {list.error && <ErrorBox error={`Cannot list the connections: ${list.error}`} />}
          {list.data && !options.length && (
            <p className="note" data-testid="no-llm-connection">
              There is no LLM connection in namespace <strong>{namespace.trim() || 'default'}</strong> or among the global ones. Add one of type{' '}
              <code>llm</code> (an OpenAI-compatible endpoint: OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio) under{' '}
              <Link to="/admin/connections">Connections</Link>, then come back.
            </p>
          )}
          {problem && (
            <p className="field-error" role="alert">
              {problem}
            </p>
          )}
          <div className="actions">
            <button type="submit" disabled={busy || !options.length}>
              {draft ? 'Generate again' : 'Generate'}
            </button>
            {busy && (
              <span aria-busy="true" role="status" className="muted">
                Asking {connection} for a draft…
              </span>
            )}
          </div>
        </form>
        <ErrorBox error={error} />
        {draft && <DraftView draft={draft} />}
        <div className="actions modal-actions">
          {draft && (
            <button type="button" onClick={() => onUse(draft.source)}>
              Use this draft
            </button>
          )}
          <button type="button" className="secondary" onClick={onClose}>
            Cancel
          </button>
          {draft && (
            <span className="muted">
              {replacesChanges ? "It replaces the editor's unsaved changes. " : ''}It goes into the editor as an unsaved change: review it, then deploy as usual.
            </span>
          )}
        </div>
      </div>
    </div>
  );
}

function DraftView({ draft }: { draft: DraftResult }) {
  const marks = useMemo(() => problemLines(draft.errors), [draft.errors]);
  const lines = draft.source.replace(/\n$/, '').split('\n');
  return (
    <section className="draft-result" aria-label="The draft">
      <p role="status" className={draft.valid ? 'ok' : 'bad'}>
        {draft.valid
          ? '✓ Valid: the draft passes the checks a deploy makes.'
          : `✗ ${draft.errors.length} problem${draft.errors.length === 1 ? '' : 's'}: fix ${draft.errors.length === 1 ? 'it' : 'them'} in the editor after using the draft, or generate again.`}
      </p>
      <pre className="code draft-source" aria-label="Draft YAML" tabIndex={0}>
        {lines.map((text, i) => {
          const found = marks.get(i + 1);
          return (
            <div key={i} className={found ? 'line has-problem' : 'line'} data-line={i + 1} title={found?.join('; ')}>
              <span className="ln" aria-hidden="true">
                {i + 1}
              </span>
              {text || ' '}
            </div>
          );
        })}
      </pre>
      {draft.errors.length > 0 && (
        <ul className="problems" aria-label="Problems in the draft">
          {draft.errors.map((p, i) => (
            <li key={i}>{problemText(p)}</li>
          ))}
        </ul>
      )}
      <p className="muted" data-testid="draft-usage">
        {draft.model} · {usageText(draft.usage)}
      </p>
    </section>
  );
}
