import { Link, useSearchParams } from 'react-router-dom';
import { qs } from '../api';
import { ErrorBox, fmtTime, StatusBadge, WorkflowSummary } from '../util';
import { useCursorList, VirtualTable, type Column } from '../VirtualTable';

const LABELS = ['stage', 'service', 'automation', 'trigger'] as const;

const COLUMNS: Column<WorkflowSummary>[] = [
  {
    header: 'Name',
    cell: (w) => (
      <>
        <Link to={`/workflows/${encodeURIComponent(w.name)}`}>{w.name}</Link>
        <div className="muted ellipsis" title={w.description}>
          {w.description}
        </div>
      </>
    ),
  },
  { header: 'Namespace', width: '9rem', cell: (w) => w.namespace },
  {
    header: 'Labels',
    cell: (w) => (
      <div className="ellipsis" title={Object.entries(w.labels ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ')}>
        {Object.entries(w.labels ?? {}).map(([k, v]) => (
          <span className="tag" key={k}>
            {k}: {v}
          </span>
        ))}
      </div>
    ),
  },
  { header: 'Version', width: '6rem', cell: (w) => `v${w.version}` },
  {
    header: 'Last run',
    width: '9rem',
    cell: (w) =>
      w.last_run ? (
        <Link to={`/runs/${w.last_run.id}`} aria-label={`last run of ${w.name}: ${w.last_run.status}`}>
          <StatusBadge status={w.last_run.status} />
        </Link>
      ) : (
        <span className="muted">never</span>
      ),
  },
  { header: 'Next scheduled', width: '12rem', cell: (w) => fmtTime(w.next_fire) },
];

export default function Workflows() {
  const [params, setParams] = useSearchParams();
  const filters = {
    q: params.get('q') ?? '',
    namespace: params.get('namespace') ?? '',
    ...Object.fromEntries(LABELS.map((l) => [l, params.get(l) ?? ''])),
  } as Record<string, string>;
  const list = useCursorList<WorkflowSummary>(
    (cursor) =>
      `/api/v1/workflows${qs({
        q: filters.q,
        namespace: filters.namespace,
        label: LABELS.filter((l) => filters[l]).map((l) => `${l}:${filters[l]}`),
        cursor,
        limit: 100,
      })}`,
    params.toString(),
  );

  const set = (key: string, value: string) => {
    const p = new URLSearchParams(params);
    if (value) p.set(key, value);
    else p.delete(key);
    setParams(p, { replace: true });
  };

  return (
    <section aria-labelledby="wf-title">
      <div className="bar">
        <h1 id="wf-title">Workflows</h1>
        <Link className="button" to="/editor">
          New workflow
        </Link>
      </div>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search
          <input type="search" value={filters.q} onChange={(e) => set('q', e.target.value)} placeholder="name or description" />
        </label>
        <label>
          Namespace
          <input value={filters.namespace} onChange={(e) => set('namespace', e.target.value)} />
        </label>
        {LABELS.map((l) => (
          <label key={l}>
            {l[0].toUpperCase() + l.slice(1)}
            <input value={filters[l]} onChange={(e) => set(l, e.target.value)} />
          </label>
        ))}
      </form>
      <ErrorBox error={list.error} />
      <VirtualTable list={list} columns={COLUMNS} rowKey={(w) => w.name} label="Workflows" empty="No workflows match." noun="workflows" rowHeight={58} height="calc(100vh - 260px)" />
    </section>
  );
}
