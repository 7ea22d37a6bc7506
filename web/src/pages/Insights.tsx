// Insights (`/api/v1/insights/...`): failed step attempts grouped by the similarity of
// their errors, runs and steps whose duration is far outside their own history, and the
// retry policies and timeouts that history suggests — each linked to the runs, workflows
// and editor they are about.
import { useMemo, useState } from 'react';
import { Link, NavLink, useLocation, useParams, useSearchParams } from 'react-router-dom';
import { type Anomaly, type FailureCluster, type FailureClusters, qs, type Suggestion } from '../api';
import { ErrorBox, fmtDuration, fmtTime, type Page, useApi, type WorkflowSummary } from '../util';
import { stringify } from 'yaml';
import { anomalyDetail, anomalyText, DEFAULT_WINDOW, relativeTime, runStepLink, sinceFor, windowLabel, WINDOWS } from './insights';

const TABS: { key: string; label: string }[] = [
  { key: 'failures', label: 'Failure clusters' },
  { key: 'anomalies', label: 'Anomalies' },
  { key: 'suggestions', label: 'Suggestions' },
];

export default function Insights() {
  const { tab = 'failures' } = useParams();
  const { search } = useLocation();
  const [params, setParams] = useSearchParams();
  const workflow = params.get('workflow') ?? '';
  const period = params.get('window') ?? DEFAULT_WINDOW;
  const workflows = useApi<Page<WorkflowSummary>>(`/api/v1/workflows${qs({ limit: 200 })}`);
  const names = useMemo(() => {
    const found = (workflows.data?.items ?? []).map((w) => w.name);
    return workflow && !found.includes(workflow) ? [workflow, ...found] : found;
  }, [workflows.data, workflow]);

  const set = (key: string, value: string) => {
    const p = new URLSearchParams(params);
    if (value) p.set(key, value);
    else p.delete(key);
    setParams(p, { replace: true });
  };

  return (
    <section aria-labelledby="insights-title">
      <h1 id="insights-title">Insights</h1>
      <nav className="subnav" aria-label="Insights">
        {TABS.map((t) => (
          <NavLink key={t.key} to={{ pathname: t.key === 'failures' ? '/insights' : `/insights/${t.key}`, search }} end>
            {t.label}
          </NavLink>
        ))}
      </nav>
      <form className="filters" role="search" aria-label="Insights filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Workflow
          <select value={workflow} onChange={(e) => set('workflow', e.target.value)}>
            <option value="">every workflow</option>
            {names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
        {tab !== 'suggestions' && (
          <label>
            Time window
            <select value={period} onChange={(e) => set('window', e.target.value === DEFAULT_WINDOW ? '' : e.target.value)}>
              {WINDOWS.map((w) => (
                <option key={w.key} value={w.key}>
                  {w.label}
                </option>
              ))}
            </select>
          </label>
        )}
      </form>
      {tab === 'anomalies' ? (
        <Anomalies workflow={workflow} period={period} />
      ) : tab === 'suggestions' ? (
        <Suggestions workflow={workflow} />
      ) : (
        <Failures workflow={workflow} period={period} />
      )}
    </section>
  );
}

function Loading({ what }: { what: string }) {
  return <p aria-busy="true">Loading {what}…</p>;
}

function When({ iso, now, prefix }: { iso: string; now: number; prefix?: string }) {
  return (
    <time dateTime={iso} title={fmtTime(iso)}>
      {prefix}
      {relativeTime(iso, now)}
    </time>
  );
}

function scope(workflow: string, period?: string): string {
  return `${workflow ? ` of ${workflow}` : ''}${period ? ` in the ${windowLabel(period)}` : ''}`;
}

// -- failure clusters -----------------------------------------------------------------------

function Failures({ workflow, period }: { workflow: string; period: string }) {
  const since = useMemo(() => sinceFor(period, Date.now()), [period]);
  const res = useApi<FailureClusters>(`/api/v1/insights/failures${qs({ workflow, since })}`);
  const now = Date.now();
  if (res.error) return <ErrorBox error={`Cannot read the failure clusters: ${res.error}`} />;
  if (!res.data) return <Loading what="failure clusters" />;
  const { clusters, method } = res.data;
  const total = clusters.reduce((n, c) => n + c.count, 0);
  return (
    <>
      <p className="muted" role="status">
        {clusters.length
          ? `${total} failed step attempt${total === 1 ? '' : 's'}${scope(workflow, period)} in ${clusters.length} cluster${clusters.length === 1 ? '' : 's'}, most frequent first.`
          : ''}{' '}
        {method === 'embeddings'
          ? 'Grouped by the meaning of their error text (the offline sentence model).'
          : 'Grouped by the words of their error text (the offline sentence model is not installed on the server).'}
      </p>
      {!clusters.length && (
        <div className="card empty" data-testid="clusters-empty">
          <p>
            <strong>No failed step attempts{scope(workflow, period)}.</strong>
          </p>
          <p className="muted">
            When steps fail, their errors are grouped here by similarity — one line per kind of failure, with how often it happened, since when, and the
            workflows and steps it hit. Widen the time window to look further back.
          </p>
        </div>
      )}
      <ol className="plain clusters" aria-label="Failure clusters">
        {clusters.map((c) => (
          <Cluster key={c.id} cluster={c} now={now} />
        ))}
      </ol>
    </>
  );
}

function Cluster({ cluster: c, now }: { cluster: FailureCluster; now: number }) {
  const title = `cluster-${c.id}`;
  return (
    <li className="card cluster" aria-labelledby={title} data-cluster={c.id}>
      <div className="cluster-head">
        <span className="badge count-badge" title={`${c.count} failed attempts`}>
          {c.count}×
        </span>
        <h2 id={title} className="cluster-label mono">
          {c.label}
        </h2>
      </div>
      <p className="muted">
        <When iso={c.first_seen} now={now} prefix="first seen " /> · <When iso={c.last_seen} now={now} prefix="last seen " />
      </p>
      <p>
        Workflows:{' '}
        {c.workflows.map((w, i) => (
          <span key={w}>
            {i > 0 && ', '}
            <Link to={`/workflows/${encodeURIComponent(w)}`}>{w}</Link>
          </span>
        ))}
        {c.steps.length > 0 && (
          <>
            {' · steps: '}
            {c.steps.map((s) => (
              <span className="tag" key={`${s.workflow}\u0000${s.step}`}>
                {s.workflow} › {s.step} ×{s.count}
              </span>
            ))}
          </>
        )}
      </p>
      {c.examples.length > 0 && (
        <details>
          <summary>
            Examples ({c.examples.length}
            {c.examples.length < c.count ? ` of ${c.count}` : ''})
          </summary>
          <table className="list examples">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Run</th>
                <th scope="col">Step</th>
                <th scope="col">Attempt</th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {c.examples.map((e) => (
                <tr key={`${e.run_id}\u0000${e.step}\u0000${e.attempt}`}>
                  <td>
                    <When iso={e.at} now={now} />
                  </td>
                  <td>
                    <Link to={runStepLink(e.run_id, null)} title={e.run_id}>
                      {e.workflow} run {e.run_id.slice(0, 8)}…
                    </Link>
                  </td>
                  <td>
                    <Link to={runStepLink(e.run_id, e.step)}>{e.step}</Link>
                  </td>
                  <td className="num">{e.attempt}</td>
                  <td className="mono small-text error-text">{e.error}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </li>
  );
}

// -- anomalies ------------------------------------------------------------------------------

function Anomalies({ workflow, period }: { workflow: string; period: string }) {
  const since = useMemo(() => sinceFor(period, Date.now()), [period]);
  const res = useApi<{ anomalies: Anomaly[] }>(`/api/v1/insights/anomalies${qs({ workflow, since })}`);
  const now = Date.now();
  if (res.error) return <ErrorBox error={`Cannot read the anomalies: ${res.error}`} />;
  if (!res.data) return <Loading what="anomalies" />;
  const items = res.data.anomalies;
  if (!items.length) {
    return (
      <div className="card empty" data-testid="anomalies-empty">
        <p>
          <strong>No unusual durations{scope(workflow, period)}.</strong>
        </p>
        <p className="muted">
          A run or step appears here when it took far longer (or far less time) than its own history: its duration is compared with the median of
          earlier runs of the same workflow and step, with a robust z-score. Workflows need a history of finished runs before anything can stand out.
        </p>
      </div>
    );
  }
  return (
    <table className="list anomalies" aria-label="Anomalies">
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">Run</th>
          <th scope="col">Workflow</th>
          <th scope="col">Step</th>
          <th scope="col">Duration</th>
          <th scope="col">Median</th>
          <th scope="col">Direction</th>
          <th scope="col" className="num">
            Score
          </th>
        </tr>
      </thead>
      <tbody>
        {items.map((a) => (
          <tr key={`${a.run_id}\u0000${a.step ?? ''}`} data-run={a.run_id}>
            <td>
              <When iso={a.at} now={now} />
            </td>
            <td>
              <Link to={runStepLink(a.run_id, a.step)} className="mono" title={a.run_id}>
                {a.run_id.slice(0, 8)}…
              </Link>
            </td>
            <td>
              <Link to={`/workflows/${encodeURIComponent(a.workflow)}`}>{a.workflow}</Link>
            </td>
            <td>{a.step ?? <span className="muted">whole run</span>}</td>
            <td title={anomalyDetail(a)}>
              {fmtDuration(a.duration)}
              <div className="muted">{anomalyText(a)}</div>
            </td>
            <td>{fmtDuration(a.median)}</td>
            <td>
              <span className={`badge anomaly-${a.direction}`}>{a.direction}</span>
            </td>
            <td className="num">{a.score.toFixed(1)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// -- suggestions ----------------------------------------------------------------------------

/** The suggested setting as YAML lines to put under the step (`timeout: 4m`). */
export function suggestionYaml(s: Suggestion): string {
  return stringify(s.suggested, { lineWidth: 0, flowCollectionPadding: false }).trimEnd();
}

/** The current setting as people read it: `none`, `2`, `{max: 2, backoff: constant}`. */
export function currentText(value: unknown): string {
  if (value === null || value === undefined || value === '') return 'none';
  if (typeof value === 'object') return stringify(value, { collectionStyle: 'flow', flowCollectionPadding: false, lineWidth: 0 }).trim();
  return String(value);
}

function Suggestions({ workflow }: { workflow: string }) {
  const res = useApi<{ suggestions: Suggestion[] }>(`/api/v1/insights/suggestions${qs({ workflow })}`);
  if (res.error) return <ErrorBox error={`Cannot read the suggestions: ${res.error}`} />;
  if (!res.data) return <Loading what="suggestions" />;
  const items = res.data.suggestions;
  if (!items.length) {
    return (
      <div className="card empty" data-testid="suggestions-empty">
        <p>
          <strong>No suggestions{scope(workflow)}.</strong>
        </p>
        <p className="muted">
          Suggestions come from the run history: a retry policy for a step that failed and then passed when retried, and a timeout for a step without one,
          from the percentiles of its durations. They appear once steps have enough runs to go by.
        </p>
      </div>
    );
  }
  return (
    <ul className="plain suggestions" aria-label="Suggestions">
      {items.map((s) => (
        <SuggestionCard key={`${s.workflow}\u0000${s.step}\u0000${s.kind}`} s={s} />
      ))}
    </ul>
  );
}

async function copyText(text: string): Promise<void> {
  if (navigator.clipboard?.writeText) return navigator.clipboard.writeText(text);
  // no Clipboard API (an insecure origin): the old way, through a selected text area
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('the browser refused to copy');
}

function SuggestionCard({ s }: { s: Suggestion }) {
  const [copied, setCopied] = useState<string | null>(null);
  const snippet = suggestionYaml(s);
  const title = `suggestion-${s.workflow}-${s.step}-${s.kind}`;
  return (
    <li className="card suggestion" aria-labelledby={title} data-suggestion={`${s.workflow}/${s.step}/${s.kind}`}>
      <h2 id={title}>
        <Link to={`/workflows/${encodeURIComponent(s.workflow)}`}>{s.workflow}</Link> › {s.step} <span className="tag">{s.kind}</span>
      </h2>
      <p>{s.reason}</p>
      <p className="muted">
        Now: <code>{currentText(s.current)}</code>
      </p>
      <div className="snippet">
        <pre className="code" aria-label={`Suggested ${s.kind} for ${s.step}`}>
          {snippet}
        </pre>
        <div className="actions">
          <button
            type="button"
            className="small"
            onClick={() =>
              copyText(snippet).then(
                () => setCopied('Copied.'),
                (e: unknown) => setCopied(`Cannot copy: ${e instanceof Error ? e.message : String(e)}; select the text instead.`),
              )
            }
            aria-label={`Copy the suggested ${s.kind} for ${s.step}`}
          >
            Copy
          </button>
          <Link className="button small secondary" to={`/editor/${encodeURIComponent(s.workflow)}`}>
            Open {s.workflow} in the editor
          </Link>
          <span role="status" className="muted">
            {copied}
          </span>
        </div>
      </div>
      {Object.keys(s.evidence ?? {}).length > 0 && (
        <details>
          <summary>Evidence</summary>
          <pre className="code">{JSON.stringify(s.evidence, null, 2)}</pre>
        </details>
      )}
    </li>
  );
}
