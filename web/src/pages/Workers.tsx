// The worker registry (`GET /api/v1/workers`): every worker process with its state,
// queues, tags, load and how long ago it last beat; late and lost ones stand out.
import { useSearchParams } from 'react-router-dom';
import { qs } from '../api';
import { ErrorBox, fmtTime, useApi, usePoll } from '../util';
import { fmtAge, heartbeatHealth, type Worker } from './workers';

const POLL_MS = 5_000;
const STATES = ['running', 'draining', 'stopped', 'lost'];
const HEALTH_TEXT: Record<string, string> = { ok: '', late: 'late', lost: 'lost', gone: '' };

function Load({ w }: { w: Worker }) {
  const pct = Math.round(Math.min(1, Math.max(0, w.load)) * 100);
  return (
    <div className="load" title={`${pct}% busy`}>
      <span className="num">
        {w.running} / {w.concurrency}
      </span>
      <span className="load-track" aria-hidden="true">
        <span className={`load-bar${pct >= 90 ? ' full' : ''}`} style={{ width: `${pct}%` }} />
      </span>
    </div>
  );
}

export default function Workers() {
  const [params, setParams] = useSearchParams();
  const state = params.get('state') ?? '';
  const workers = useApi<{ items: Worker[] }>(`/api/v1/workers${qs({ state })}`);
  usePoll(workers.reload, POLL_MS);
  const items = workers.data?.items ?? [];
  const live = items.filter((w) => w.state === 'running' || w.state === 'draining');
  const capacity = live.reduce((n, w) => n + w.concurrency, 0);
  const busy = live.reduce((n, w) => n + w.running, 0);
  const late = items.filter((w) => heartbeatHealth(w) === 'late' || heartbeatHealth(w) === 'lost').length;

  return (
    <section aria-labelledby="workers-title">
      <h1 id="workers-title">Workers</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          State
          <select
            value={state}
            onChange={(e) => {
              const p = new URLSearchParams(params);
              if (e.target.value) p.set('state', e.target.value);
              else p.delete('state');
              setParams(p, { replace: true });
            }}
          >
            <option value="">any</option>
            {STATES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <p className="muted" role="status" aria-live="polite">
          {workers.data
            ? `${live.length} live worker${live.length === 1 ? '' : 's'}, running ${busy} of ${capacity} step slots${late ? ` · ${late} late or lost` : ''} · refreshed every ${POLL_MS / 1000} s`
            : 'Loading…'}
        </p>
      </form>
      <ErrorBox error={workers.error} />
      <table className="list workers" aria-label="Workers, live first">
        <thead>
          <tr>
            <th scope="col">Host</th>
            <th scope="col">State</th>
            <th scope="col">Queues</th>
            <th scope="col">Tags</th>
            <th scope="col">Load</th>
            <th scope="col">Heartbeat</th>
            <th scope="col">Started</th>
            <th scope="col">Version</th>
          </tr>
        </thead>
        <tbody>
          {items.map((w) => {
            const health = heartbeatHealth(w);
            return (
              <tr key={w.id} className={`worker-${health}`} data-worker={w.id}>
                <td>
                  <strong>{w.host}</strong> <span className="muted">pid {w.pid}</span>
                  <div className="muted mono">{w.id}</div>
                </td>
                <td>
                  <span className={`badge worker-state-${w.state}`}>{w.state}</span>
                </td>
                <td>
                  {w.queues.map((q) => (
                    <span className="tag" key={q}>
                      {q}
                    </span>
                  ))}
                </td>
                <td>
                  {Object.keys(w.tags).length ? (
                    Object.entries(w.tags).map(([k, v]) => (
                      <span className="tag" key={k}>
                        {k}={v}
                      </span>
                    ))
                  ) : (
                    <span className="muted">none</span>
                  )}
                </td>
                <td>
                  <Load w={w} />
                </td>
                <td>
                  {health === 'gone' ? (
                    <span className="muted">stopped {fmtTime(w.stopped_at)}</span>
                  ) : (
                    <span className={`beat beat-${health}`} title={fmtTime(w.heartbeat_at)}>
                      {fmtAge(w.heartbeat_age)} ago{HEALTH_TEXT[health] && <strong> · {HEALTH_TEXT[health]}</strong>}
                    </span>
                  )}
                </td>
                <td>{fmtTime(w.started_at)}</td>
                <td className="muted">{w.version}</td>
              </tr>
            );
          })}
          {!items.length && !workers.loading && (
            <tr>
              <td colSpan={8} className="muted">
                No workers{state ? ` ${state}` : ''}. Start one with plait worker (plait serve runs one).
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}
