import { Link, useSearchParams } from 'react-router-dom';
import { qs } from '../api';
import { ErrorBox, fmtDuration, fmtTime, RUN_STATUSES, RunSummary, StatusBadge } from '../util';
import { useCursorList, VirtualTable, type Column } from '../VirtualTable';

const PAGE = 100;

const COLUMNS: Column<RunSummary>[] = [
  {
    header: 'Run',
    width: '11rem',
    cell: (r) => (
      <Link to={`/runs/${r.id}`} className="mono">
        {r.id.slice(0, 13)}…
      </Link>
    ),
  },
  {
    header: 'Workflow',
    cell: (r) => (
      <>
        <Link to={`/workflows/${encodeURIComponent(r.workflow)}`}>{r.workflow}</Link> <span className="muted">v{r.version}</span>
      </>
    ),
  },
  {
    header: 'Status',
    width: '11rem',
    cell: (r) => (
      <>
        <StatusBadge status={r.status} />
        {r.attempt > 1 && <span className="muted"> attempt {r.attempt}</span>}
      </>
    ),
  },
  { header: 'Trigger', width: '8rem', cell: (r) => r.trigger_type },
  { header: 'Started', width: '13rem', cell: (r) => fmtTime(r.created_at) },
  { header: 'Duration', width: '7rem', cell: (r) => fmtDuration(r.duration) },
];

export default function Runs() {
  const [params, setParams] = useSearchParams();
  const workflow = params.get('workflow') ?? '';
  const status = params.get('status') ?? '';
  const namespace = params.get('namespace') ?? '';
  const list = useCursorList<RunSummary>(
    (cursor) => `/api/v1/runs${qs({ workflow, status, namespace, cursor, limit: PAGE })}`,
    `${workflow}\u0000${status}\u0000${namespace}`,
  );

  const set = (key: string, value: string) => {
    const p = new URLSearchParams(params);
    if (value) p.set(key, value);
    else p.delete(key);
    setParams(p, { replace: true });
  };

  return (
    <section aria-labelledby="runs-title">
      <h1 id="runs-title">Runs</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Workflow
          <input value={workflow} onChange={(e) => set('workflow', e.target.value)} />
        </label>
        <label>
          Status
          <select value={status} onChange={(e) => set('status', e.target.value)}>
            <option value="">any</option>
            {RUN_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
        <label>
          Namespace
          <input value={namespace} onChange={(e) => set('namespace', e.target.value)} />
        </label>
      </form>
      <ErrorBox error={list.error} />
      <VirtualTable list={list} columns={COLUMNS} rowKey={(r) => r.id} label="Runs, newest first" empty="No runs." noun="runs" height="calc(100vh - 230px)" />
    </section>
  );
}
