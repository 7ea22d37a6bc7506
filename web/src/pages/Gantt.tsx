import { fmtDuration, RunStep } from '../util';

/** A timeline of every attempt of every step, on one time axis. */
export default function Gantt({ steps }: { steps: RunStep[] }) {
  const bars = steps.flatMap((s) =>
    (s.attempts ?? [])
      .filter((a) => a.started_at)
      .map((a) => ({
        step: s.id,
        attempt: a.attempt,
        status: a.status,
        start: Date.parse(a.started_at!),
        end: a.finished_at ? Date.parse(a.finished_at) : Date.now(),
      })),
  );
  if (!bars.length) return null;
  const t0 = Math.min(...bars.map((b) => b.start));
  const t1 = Math.max(...bars.map((b) => b.end), t0 + 1);
  const span = t1 - t0;
  return (
    <section className="card" aria-labelledby="gantt-title">
      <h2 id="gantt-title">Timeline</h2>
      <ol className="gantt">
        {bars.map((b) => (
          <li key={`${b.step}-${b.attempt}`}>
            <span className="gantt-label">
              {b.step}
              {b.attempt > 1 ? ` #${b.attempt}` : ''}
            </span>
            <span className="gantt-track">
              <span
                className={`gantt-bar status-${b.status}`}
                ref={(el) => {
                  if (el) {
                    el.style.left = `${((b.start - t0) / span) * 100}%`;
                    el.style.width = `${Math.max(((b.end - b.start) / span) * 100, 0.5)}%`;
                  }
                }}
                title={`${b.step} attempt ${b.attempt}: ${b.status}, ${fmtDuration((b.end - b.start) / 1000)}`}
              />
            </span>
            <span className="muted">{fmtDuration((b.end - b.start) / 1000)}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}
