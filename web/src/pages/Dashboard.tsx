import { useEffect, useState } from 'react';
import { Link } from 'react-router-dom';
import { api, qs } from '../api';
import { ErrorBox, errorText, fmtDuration, fmtTime, Page, RunSummary, WorkflowSummary } from '../util';

const MAX_PAGES = 4;
const DAYS = 14;

export interface WorkflowStats {
  workflow: string;
  runs: number;
  finished: number;
  succeeded: number;
  failed: number;
  rate: number | null;
  p50: number | null;
  p95: number | null;
}

export function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function summarise(runs: RunSummary[], now = Date.now()) {
  const days: { day: string; succeeded: number; failed: number; other: number }[] = [];
  for (let i = DAYS - 1; i >= 0; i--) {
    const d = new Date(now - i * 86400000).toISOString().slice(0, 10);
    days.push({ day: d, succeeded: 0, failed: 0, other: 0 });
  }
  const byDay = new Map(days.map((d) => [d.day, d]));
  const per = new Map<string, { runs: RunSummary[] }>();
  for (const r of runs) {
    const d = byDay.get(r.created_at.slice(0, 10));
    if (d) {
      if (r.status === 'succeeded') d.succeeded++;
      else if (['failed', 'timed_out', 'cancelled'].includes(r.status)) d.failed++;
      else d.other++;
    }
    if (!per.has(r.workflow)) per.set(r.workflow, { runs: [] });
    per.get(r.workflow)!.runs.push(r);
  }
  const stats: WorkflowStats[] = [...per.entries()].map(([workflow, { runs: rs }]) => {
    const finished = rs.filter((r) => !['queued', 'running', 'waiting'].includes(r.status));
    const succeeded = finished.filter((r) => r.status === 'succeeded').length;
    const durations = finished
      .map((r) => r.duration)
      .filter((x): x is number => typeof x === 'number')
      .sort((a, b) => a - b);
    return {
      workflow,
      runs: rs.length,
      finished: finished.length,
      succeeded,
      failed: finished.length - succeeded,
      rate: finished.length ? succeeded / finished.length : null,
      p50: percentile(durations, 50),
      p95: percentile(durations, 95),
    };
  });
  stats.sort((a, b) => (a.rate ?? 2) - (b.rate ?? 2) || b.failed - a.failed || a.workflow.localeCompare(b.workflow));
  return { days, stats };
}

export default function Dashboard() {
  const [runs, setRuns] = useState<RunSummary[] | null>(null);
  const [partial, setPartial] = useState(false);
  const [upcoming, setUpcoming] = useState<WorkflowSummary[]>([]);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    (async () => {
      try {
        const all: RunSummary[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const p = await api<Page<RunSummary>>(`/api/v1/runs${qs({ limit: 500, cursor })}`);
          all.push(...p.items);
          cursor = p.next_cursor ?? undefined;
          pages++;
        } while (cursor && pages < MAX_PAGES);
        if (!live) return;
        setRuns(all);
        setPartial(Boolean(cursor));
        const wf = await api<Page<WorkflowSummary>>(`/api/v1/workflows${qs({ limit: 200 })}`);
        if (live) setUpcoming(wf.items.filter((w) => w.next_fire).sort((a, b) => a.next_fire!.localeCompare(b.next_fire!)));
      } catch (e) {
        if (live) setError(errorText(e));
      }
    })();
    return () => {
      live = false;
    };
  }, []);

  if (error) return <ErrorBox error={error} />;
  if (!runs) return <p aria-busy="true">Loading…</p>;
  const { days, stats } = summarise(runs);
  const max = Math.max(1, ...days.map((d) => d.succeeded + d.failed + d.other));
  return (
    <section aria-labelledby="dash-title">
      <h1 id="dash-title">Dashboard</h1>
      <p className="muted">
        From the newest {runs.length} runs{partial ? ' (older runs not counted)' : ''}.
      </p>
      <div className="cols">
        <section className="card" aria-labelledby="per-day">
          <h2 id="per-day">Runs per day</h2>
          <table className="bars">
            <caption className="sr-only">Runs per day, last {DAYS} days</caption>
            <tbody>
              {days.map((d) => {
                const total = d.succeeded + d.failed + d.other;
                return (
                  <tr key={d.day}>
                    <th scope="row">{d.day.slice(5)}</th>
                    <td>
                      <span className="bar ok" style={{ width: `${(d.succeeded / max) * 100}%` }} />
                      <span className="bar bad" style={{ width: `${(d.failed / max) * 100}%` }} />
                      <span className="bar other" style={{ width: `${(d.other / max) * 100}%` }} />
                    </td>
                    <td className="num">
                      {total}
                      {d.failed ? <span className="muted"> ({d.failed} failed)</span> : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </section>
        <section className="card" aria-labelledby="upcoming">
          <h2 id="upcoming">Upcoming schedules</h2>
          <ul className="plain">
            {upcoming.map((w) => (
              <li key={w.name}>
                <Link to={`/workflows/${encodeURIComponent(w.name)}`}>{w.name}</Link> — {fmtTime(w.next_fire)}
              </li>
            ))}
            {!upcoming.length && <li className="muted">Nothing scheduled.</li>}
          </ul>
        </section>
      </div>
      <section className="card" aria-labelledby="per-wf">
        <h2 id="per-wf">Workflows (failing first)</h2>
        <table className="list">
          <thead>
            <tr>
              <th scope="col">Workflow</th>
              <th scope="col">Runs</th>
              <th scope="col">Success rate</th>
              <th scope="col">Failed</th>
              <th scope="col">p50</th>
              <th scope="col">p95</th>
            </tr>
          </thead>
          <tbody>
            {stats.map((s) => (
              <tr key={s.workflow}>
                <td>
                  <Link to={`/runs?workflow=${encodeURIComponent(s.workflow)}`}>{s.workflow}</Link>
                </td>
                <td className="num">{s.runs}</td>
                <td className="num">{s.rate === null ? '—' : `${Math.round(s.rate * 100)}%`}</td>
                <td className="num">{s.failed}</td>
                <td className="num">{fmtDuration(s.p50)}</td>
                <td className="num">{fmtDuration(s.p95)}</td>
              </tr>
            ))}
            {!stats.length && (
              <tr>
                <td colSpan={6} className="muted">
                  No runs yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
    </section>
  );
}
