import { useEffect, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { api, qs } from '../api';
import { ErrorBox, errorText, fmtTime, Page, StatusBadge, WorkflowSummary } from '../util';

const LABELS = ['stage', 'service', 'automation', 'trigger'] as const;

export default function Workflows() {
  const [params, setParams] = useSearchParams();
  const [items, setItems] = useState<WorkflowSummary[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const filters = {
    q: params.get('q') ?? '',
    namespace: params.get('namespace') ?? '',
    ...Object.fromEntries(LABELS.map((l) => [l, params.get(l) ?? ''])),
  } as Record<string, string>;
  const query = (cursor?: string) =>
    qs({
      q: filters.q,
      namespace: filters.namespace,
      label: LABELS.filter((l) => filters[l]).map((l) => `${l}:${filters[l]}`),
      cursor,
      limit: 100,
    });

  async function load(cursor?: string) {
    setLoading(true);
    try {
      const page = await api<Page<WorkflowSummary>>(`/api/v1/workflows${query(cursor)}`);
      setItems((old) => (cursor ? [...old, ...page.items] : page.items));
      setNext(page.next_cursor);
      setError(null);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setLoading(false);
    }
  }
  // eslint-disable-next-line react-hooks/exhaustive-deps
  useEffect(() => void load(), [params.toString()]);

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
      <ErrorBox error={error} />
      <table className="list">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Namespace</th>
            <th scope="col">Labels</th>
            <th scope="col">Version</th>
            <th scope="col">Last run</th>
            <th scope="col">Next scheduled</th>
          </tr>
        </thead>
        <tbody>
          {items.map((w) => (
            <tr key={w.name}>
              <td>
                <Link to={`/workflows/${encodeURIComponent(w.name)}`}>{w.name}</Link>
                <div className="muted">{w.description}</div>
              </td>
              <td>{w.namespace}</td>
              <td>
                {Object.entries(w.labels ?? {}).map(([k, v]) => (
                  <span className="tag" key={k}>
                    {k}: {v}
                  </span>
                ))}
              </td>
              <td>v{w.version}</td>
              <td>
                {w.last_run ? (
                  <Link to={`/runs/${w.last_run.id}`} aria-label={`last run of ${w.name}: ${w.last_run.status}`}>
                    <StatusBadge status={w.last_run.status} />
                  </Link>
                ) : (
                  <span className="muted">never</span>
                )}
              </td>
              <td>{fmtTime(w.next_fire)}</td>
            </tr>
          ))}
          {!items.length && !loading && (
            <tr>
              <td colSpan={6} className="muted">
                No workflows match.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {next && (
        <button type="button" onClick={() => load(next)} disabled={loading}>
          Load more
        </button>
      )}
    </section>
  );
}
