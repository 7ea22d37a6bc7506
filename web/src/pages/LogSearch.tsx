// Search the log lines of every run one may read (`GET /api/v1/logs?q=`), newest first,
// paged by cursor into a virtualised list; each hit opens its run on the line.
import { FormEvent, useEffect, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { qs } from '../api';
import { ErrorBox, fmtTime } from '../util';
import { useCursorList, VirtualTable, type Column } from '../VirtualTable';
import { highlightParts, hitLink, type LogHit } from './logsearch';

const PAGE = 100;
const FIELDS = ['q', 'workflow', 'step', 'since'] as const;
type Filters = Record<(typeof FIELDS)[number], string>;

function Line({ hit }: { hit: LogHit }) {
  return (
    <span className={`ellipsis mono hit-line${hit.stream === 'stderr' ? ' stderr' : ''}`} title={hit.line}>
      {highlightParts(hit.line, hit.highlight).map((p, i) => (p.match ? <mark key={i}>{p.text}</mark> : <span key={i}>{p.text}</span>))}
    </span>
  );
}

const COLUMNS: Column<LogHit>[] = [
  { header: 'Time', width: '14rem', cell: (h) => fmtTime(h.at) },
  {
    header: 'Run',
    width: '10rem',
    cell: (h) => (
      <Link to={hitLink(h)} className="mono" aria-label={`Open run ${h.run_id} at this line`}>
        {h.run_id.slice(0, 13)}…
      </Link>
    ),
  },
  {
    header: 'Workflow',
    width: '12rem',
    cell: (h) => (
      <span className="ellipsis" title={`${h.namespace}/${h.workflow}`}>
        <Link to={`/workflows/${encodeURIComponent(h.workflow)}`}>{h.workflow}</Link>
        {h.namespace !== 'default' && <span className="muted"> · {h.namespace}</span>}
      </span>
    ),
  },
  {
    header: 'Step',
    width: '10rem',
    cell: (h) => (
      <span className="ellipsis" title={`${h.step ?? 'run'} · attempt ${h.attempt} · ${h.stream}`}>
        {h.step ?? <span className="muted">run</span>}
        {h.attempt > 1 && <span className="muted"> #{h.attempt}</span>}
        {h.stream !== 'stdout' && <span className="muted"> · {h.stream}</span>}
      </span>
    ),
  },
  { header: 'Line', cell: (h) => <Line hit={h} /> },
];

export default function LogSearch() {
  const [params, setParams] = useSearchParams();
  const applied = Object.fromEntries(FIELDS.map((f) => [f, params.get(f) ?? ''])) as Filters;
  const [draft, setDraft] = useState<Filters>(applied);
  const key = FIELDS.map((f) => applied[f]).join('\u0000');
  // the URL changed (back, a link): the form shows what is searched
  useEffect(() => setDraft(applied), [key]); // eslint-disable-line react-hooks/exhaustive-deps
  const list = useCursorList<LogHit>((cursor) => `/api/v1/logs${qs({ ...applied, cursor, limit: PAGE })}`, key, applied.q.trim() !== '');

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const f of FIELDS) if (draft[f].trim()) p.set(f, draft[f].trim());
    setParams(p);
  };
  const set = (f: keyof Filters, v: string) => setDraft({ ...draft, [f]: v });

  return (
    <section aria-labelledby="logs-title">
      <h1 id="logs-title">Log search</h1>
      <form className="filters search-form" role="search" onSubmit={submit}>
        <label className="grow">
          Search log lines
          <input type="search" value={draft.q} onChange={(e) => set('q', e.target.value)} placeholder='error -debug, "connection refused", time*' aria-describedby="logs-help" maxLength={500} autoFocus />
        </label>
        <label>
          Workflow
          <input value={draft.workflow} onChange={(e) => set('workflow', e.target.value)} />
        </label>
        <label>
          Step
          <input value={draft.step} onChange={(e) => set('step', e.target.value)} />
        </label>
        <label>
          Since
          <input value={draft.since} onChange={(e) => set('since', e.target.value)} placeholder="2h, 7d or a time" />
        </label>
        <button type="submit">Search</button>
      </form>
      <p id="logs-help" className="help">
        All words must appear (any case); <code>"a phrase"</code>, <code>prefix*</code>, <code>a OR b</code>, <code>-excluded</code>. Words are not stemmed: <code>fail*</code> finds failed and failure.
        Secrets are masked before lines are stored, so they can be neither found nor shown.
      </p>
      <ErrorBox error={list.error} />
      {applied.q ? (
        <VirtualTable list={list} columns={COLUMNS} rowKey={(h) => String(h.id)} label="Matching log lines, newest first" empty="No line matches." noun="lines" nounOne="line" height="calc(100vh - 330px)" />
      ) : (
        <p className="muted">Type words to find in the logs of every run you may read.</p>
      )}
    </section>
  );
}
