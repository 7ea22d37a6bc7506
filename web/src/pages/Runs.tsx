import { useEffect, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { api, qs } from '../api';
import { ErrorBox, errorText, fmtDuration, fmtTime, Page, RUN_STATUSES, RunSummary, StatusBadge } from '../util';

const PAGE = 50;

export default function Runs() {
  const [params, setParams] = useSearchParams();
  const [page, setPage] = useState<Page<RunSummary> | null>(null);
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const [error, setError] = useState<string | null>(null);
  const workflow = params.get('workflow') ?? '';
  const status = params.get('status') ?? '';
  const namespace = params.get('namespace') ?? '';
  const cursor = cursors[cursors.length - 1];

  useEffect(() => {
    let live = true;
    api<Page<RunSummary>>(`/api/v1/runs${qs({ workflow, status, namespace, cursor, limit: PAGE })}`).then(
      (p) => {
        if (!live) return;
        setPage(p);
        setError(null);
      },
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [workflow, status, namespace, cursor]);

  const set = (key: string, value: string) => {
    const p = new URLSearchParams(params);
    if (value) p.set(key, value);
    else p.delete(key);
    setParams(p, { replace: true });
    setCursors([undefined]);
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
      <ErrorBox error={error} />
      <table className="list">
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">Workflow</th>
            <th scope="col">Status</th>
            <th scope="col">Trigger</th>
            <th scope="col">Started</th>
            <th scope="col">Duration</th>
          </tr>
        </thead>
        <tbody>
          {page?.items.map((r) => (
            <tr key={r.id}>
              <td>
                <Link to={`/runs/${r.id}`} className="mono">
                  {r.id.slice(0, 13)}…
                </Link>
              </td>
              <td>
                <Link to={`/workflows/${encodeURIComponent(r.workflow)}`}>{r.workflow}</Link> <span className="muted">v{r.version}</span>
              </td>
              <td>
                <StatusBadge status={r.status} />
                {r.attempt > 1 && <span className="muted"> attempt {r.attempt}</span>}
              </td>
              <td>{r.trigger_type}</td>
              <td>{fmtTime(r.created_at)}</td>
              <td>{fmtDuration(r.duration)}</td>
            </tr>
          ))}
          {page && !page.items.length && (
            <tr>
              <td colSpan={6} className="muted">
                No runs.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <nav className="pager" aria-label="Pages">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>
          Newer
        </button>
        <span>Page {cursors.length}</span>
        <button type="button" disabled={!page?.next_cursor} onClick={() => setCursors([...cursors, page!.next_cursor!])}>
          Older
        </button>
      </nav>
    </section>
  );
}
