import { Link, useNavigate, useParams } from 'react-router-dom';
import { qs } from '../api';
import { ErrorBox, fmtTime, Page, RunSummary, StatusBadge, useApi, WorkflowDetail } from '../util';
import StartRunForm from './StartRunForm';
import { VersionHistory } from './VersionHistory';

export default function WorkflowPage() {
  const { name = '' } = useParams();
  const navigate = useNavigate();
  const wf = useApi<WorkflowDetail>(`/api/v1/workflows/${encodeURIComponent(name)}`);
  const runs = useApi<Page<RunSummary>>(`/api/v1/runs${qs({ workflow: name, limit: 10 })}`);
  if (wf.error) return <ErrorBox error={wf.error} />;
  if (!wf.data) return <p aria-busy="true">Loading…</p>;
  const w = wf.data;
  return (
    <section aria-labelledby="w-title">
      <div className="bar">
        <h1 id="w-title">{w.name}</h1>
        <Link className="button" to={`/editor/${encodeURIComponent(w.name)}`}>
          Edit
        </Link>
      </div>
      <p>{w.description}</p>
      <p className="muted">
        namespace {w.namespace} · version {w.version} by {w.author} · {w.steps} steps · next scheduled {fmtTime(w.next_fire)}
      </p>
      <div className="cols">
        <StartRunForm key={w.version} workflow={w.name} inputs={w.inputs ?? []} onStarted={(run) => navigate(`/runs/${run.id}`)} />
        <div className="card">
          <h2>Recent runs</h2>
          <ul className="plain">
            {runs.data?.items.map((r) => (
              <li key={r.id}>
                <Link to={`/runs/${r.id}`}>
                  <StatusBadge status={r.status} /> {fmtTime(r.created_at)}
                </Link>
              </li>
            ))}
            {runs.data && !runs.data.items.length && <li className="muted">No runs yet.</li>}
          </ul>
          <Link to={`/runs?workflow=${encodeURIComponent(w.name)}`}>All runs of {w.name}</Link>
        </div>
      </div>
      <VersionHistory name={w.name} onChanged={() => wf.reload()} />
      <details className="card">
        <summary>Current YAML</summary>
        <pre className="code">{w.source}</pre>
      </details>
    </section>
  );
}

