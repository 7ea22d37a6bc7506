import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router-dom';
import { api, followSse, type RunAnomaly } from '../api';
import { ACTIVE, ErrorBox, errorText, fmtDuration, fmtTime, RunDetail, RunStep, StatusBadge } from '../util';
import Gantt from './Gantt';
import { anomalyDetail, anomalyText } from './insights';

const RunGraph = lazy(() => import('../editor/RunGraph'));

interface LogLine {
  id: number;
  step: string;
  attempt: number;
  stream: string;
  line: string;
  at: string;
}

export default function RunPage() {
  const { id = '' } = useParams();
  // a log search hit opens the run on its step with the line marked (?step=&line=)
  const [params] = useSearchParams();
  const markedLine = Number(params.get('line') ?? '') || null;
  const [run, setRun] = useState<(RunDetail & { anomaly?: RunAnomaly | null }) | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [logs, setLogs] = useState<LogLine[]>([]);
  const [live, setLive] = useState(false);
  const [stepFilter, setStepFilter] = useState(params.get('step') ?? '');
  const [source, setSource] = useState<string | null>(null);
  const [comments, setComments] = useState<Record<string, string>>({});
  const [generation, setGeneration] = useState(0);
  const refetchTimer = useRef<number | undefined>(undefined);
  const url = `/api/v1/runs/${encodeURIComponent(id)}`;

  const load = useCallback(async () => {
    try {
      setRun(await api<RunDetail>(url));
      setError(null);
    } catch (e) {
      setError(errorText(e));
    }
  }, [url]);

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    if (!run) return;
    api<{ source: string }>(`/api/v1/workflows/${encodeURIComponent(run.workflow)}/versions/${run.version}`).then(
      (v) => setSource(v.source),
      () => setSource(null),
    );
  }, [run?.workflow, run?.version]); // eslint-disable-line react-hooks/exhaustive-deps

  // Live status and logs over Server-Sent Events.
  useEffect(() => {
    const ctrl = new AbortController();
    setLogs([]);
    setLive(true);
    const seen = new Set<number>();
    followSse(
      `${url}/logs?follow=true`,
      (e) => {
        if (e.event === 'log') {
          const line = JSON.parse(e.data) as LogLine;
          if (seen.has(line.id)) return;
          seen.add(line.id);
          setLogs((old) => [...old, line]);
        } else if (e.event === 'status') {
          const st = JSON.parse(e.data) as { status: string; reason: string | null; steps: Record<string, string> };
          setRun((old) =>
            old
              ? {
                  ...old,
                  status: st.status,
                  reason: st.reason,
                  steps: old.steps.map((s) => (st.steps[s.id] ? { ...s, status: st.steps[s.id] } : s)),
                }
              : old,
          );
          window.clearTimeout(refetchTimer.current);
          refetchTimer.current = window.setTimeout(load, 250);
        } else if (e.event === 'end') {
          setLive(false);
          void load();
        }
      },
      ctrl.signal,
    )
      .catch((err) => setError(errorText(err)))
      .finally(() => setLive(false));
    return () => {
      ctrl.abort();
      window.clearTimeout(refetchTimer.current);
    };
  }, [url, load, generation]);

  async function act(path: string, body?: unknown) {
    setActionError(null);
    try {
      await api(`${url}/${path}`, { method: 'POST', json: body ?? {} });
      await load();
      if (path === 'retry') setGeneration((g) => g + 1);
    } catch (e) {
      setActionError(errorText(e));
    }
  }

  const statuses = useMemo(() => Object.fromEntries((run?.steps ?? []).map((s) => [s.id, s.status])), [run]);
  const shownLogs = stepFilter ? logs.filter((l) => l.step === stepFilter) : logs;
  const logBox = useRef<HTMLPreElement>(null);
  const hasMarked = markedLine !== null && shownLogs.some((l) => l.id === markedLine);
  useEffect(() => {
    const el = logBox.current;
    if (!el) return;
    const marked = hasMarked ? el.querySelector<HTMLElement>('.marked') : null;
    // the marked line stays in view (within the log box); otherwise follow the newest line
    if (marked) el.scrollTop = marked.offsetTop - el.clientHeight / 3;
    else el.scrollTop = el.scrollHeight;
  }, [shownLogs.length, hasMarked]);

  if (error && !run) return <ErrorBox error={error} />;
  if (!run) return <p aria-busy="true">Loading…</p>;
  const active = ACTIVE.has(run.status);
  const waitingApprovals = run.steps.filter((s) => s.uses === 'approval' && s.status === 'waiting');

  return (
    <section aria-labelledby="run-title">
      <div className="bar">
        <h1 id="run-title">
          Run of <Link to={`/workflows/${encodeURIComponent(run.workflow)}`}>{run.workflow}</Link> <StatusBadge status={run.status} />
        </h1>
        <div className="actions">
          {active && (
            <button type="button" className="danger" onClick={() => act('cancel')}>
              Cancel run
            </button>
          )}
          {['failed', 'cancelled', 'timed_out'].includes(run.status) && (
            <button type="button" onClick={() => act('retry', { version: 'original' })}>
              Retry from failure
            </button>
          )}
        </div>
      </div>
      <p className="muted">
        <span className="mono">{run.id}</span> · version {run.version} · attempt {run.attempt} · {run.trigger_type} · started {fmtTime(run.started_at ?? run.created_at)} · {fmtDuration(run.duration)}
        {live && <span className="live"> · live</span>}
      </p>
      {run.anomaly && (
        <p className={`anomaly-flag anomaly-flag-${run.anomaly.direction}`} data-testid="anomaly-badge">
          <span className={`badge anomaly-${run.anomaly.direction}`} title={anomalyDetail(run.anomaly)} tabIndex={0} aria-describedby="anomaly-numbers">
            unusual duration
          </span>{' '}
          {anomalyText(run.anomaly)}
          <span id="anomaly-numbers" className="sr-only">
            {anomalyDetail(run.anomaly)}
          </span>{' '}
          <Link to={`/insights/anomalies?workflow=${encodeURIComponent(run.workflow)}`}>other anomalies of {run.workflow}</Link>
        </p>
      )}
      <div role="status" aria-live="polite" className="sr-only">
        Run status: {run.status}
      </div>
      {run.reason && <p className="note">Waiting: {run.reason}</p>}
      {run.error && <p className="error">{run.error}</p>}
      <ErrorBox error={actionError} />

      {waitingApprovals.map((s) => (
        <form key={s.id} className="card approval" onSubmit={(e) => e.preventDefault()} aria-label={`Approval ${s.id}`}>
          <h2>Approval needed: {s.name}</h2>
          {s.reason && <p>{s.reason}</p>}
          <label>
            Comment for {s.id}
            <input value={comments[s.id] ?? ''} onChange={(e) => setComments({ ...comments, [s.id]: e.target.value })} />
          </label>
          <div className="actions">
            <button type="button" onClick={() => act(`steps/${encodeURIComponent(s.id)}/approve`, { comment: comments[s.id] ?? '' })}>
              Approve {s.id}
            </button>
            <button type="button" className="danger" onClick={() => act(`steps/${encodeURIComponent(s.id)}/reject`, { comment: comments[s.id] ?? '' })}>
              Reject {s.id}
            </button>
          </div>
        </form>
      ))}

      {source && (
        <Suspense fallback={<div className="graph" aria-busy="true" />}>
          <RunGraph source={source} statuses={statuses} />
        </Suspense>
      )}

      <section className="card" aria-labelledby="steps-title">
        <h2 id="steps-title">Steps</h2>
        <table className="list">
          <thead>
            <tr>
              <th scope="col">Step</th>
              <th scope="col">Action</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts</th>
              <th scope="col">Duration</th>
              <th scope="col">Why / error</th>
            </tr>
          </thead>
          <tbody>
            {run.steps.map((s: RunStep) => (
              <tr key={s.id} data-step={s.id}>
                <td>
                  {s.parent && <span className="muted">{s.parent} › </span>}
                  {s.name}
                </td>
                <td>{s.uses}</td>
                <td>
                  <StatusBadge status={s.status} />
                </td>
                <td>{s.attempt}</td>
                <td>{fmtDuration(s.duration)}</td>
                <td>{s.error ?? s.reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <Gantt steps={run.steps} />

      <section className="card" aria-labelledby="logs-title">
        <div className="bar">
          <h2 id="logs-title">Logs</h2>
          <label className="inline">
            Step
            <select value={stepFilter} onChange={(e) => setStepFilter(e.target.value)}>
              <option value="">all steps</option>
              {run.steps.map((s) => (
                <option key={s.id} value={s.id}>
                  {s.id}
                </option>
              ))}
            </select>
          </label>
        </div>
        <pre className="logs" ref={logBox} tabIndex={0} aria-label="Log lines" data-testid="logs">
          {shownLogs.map((l) => (
            <div key={l.id} className={[l.stream === 'stderr' ? 'stderr' : '', l.id === markedLine ? 'marked' : ''].join(' ').trim() || undefined} data-line={l.id}>
              <span className="muted">[{l.step}]</span> {l.line}
            </div>
          ))}
          {!shownLogs.length && <span className="muted">No log lines{live ? ' yet' : ''}.</span>}
        </pre>
      </section>

      <div className="cols">
        <section className="card">
          <h2>Inputs</h2>
          <pre className="code">{JSON.stringify(run.inputs, null, 2)}</pre>
        </section>
        <section className="card">
          <h2>Outputs</h2>
          <pre className="code">{JSON.stringify(run.outputs, null, 2)}</pre>
        </section>
      </div>
    </section>
  );
}
