import { useState } from 'react';
import { api, qs } from '../api';
import { ErrorBox, errorText, fmtTime, useApi, Version } from '../util';

export function VersionHistory({ name, onChanged }: { name: string; onChanged?: () => void }) {
  const versions = useApi<Version[]>(name ? `/api/v1/workflows/${encodeURIComponent(name)}/versions` : null, [name]);
  const [diff, setDiff] = useState<{ title: string; text: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  if (!name) return null;

  async function showDiff(v: number) {
    try {
      const text = await api<string>(`/api/v1/workflows/${encodeURIComponent(name)}/diff${qs({ from: v - 1, to: v })}`);
      setDiff({ title: `Changes in version ${v}`, text: typeof text === 'string' ? text : JSON.stringify(text) });
    } catch (e) {
      setError(errorText(e));
    }
  }
  async function doRollback(v: number) {
    if (!window.confirm(`Make version ${v} of ${name} current again?`)) return;
    try {
      await api(`/api/v1/workflows/${encodeURIComponent(name)}/rollback`, { method: 'POST', json: { version: v } });
      setMessage(`Version ${v} is current.`);
      setError(null);
      await versions.reload();
      onChanged?.();
    } catch (e) {
      setError(errorText(e));
    }
  }
  return (
    <section className="card" aria-labelledby={`hist-${name}`}>
      <h2 id={`hist-${name}`}>Version history</h2>
      <ErrorBox error={error || versions.error} />
      {message && (
        <p role="status" className="ok">
          {message}
        </p>
      )}
      <table className="list">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Author</th>
            <th scope="col">Deployed</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {versions.data?.map((v) => (
            <tr key={v.version} className={v.current ? 'current' : ''}>
              <td>
                v{v.version} {v.current && <span className="tag">current</span>}
              </td>
              <td>{v.author}</td>
              <td>{fmtTime(v.created_at)}</td>
              <td className="actions">
                {v.version > 1 && (
                  <button type="button" className="small" onClick={() => showDiff(v.version)} aria-label={`Show changes in version ${v.version}`}>
                    Diff
                  </button>
                )}
                {!v.current && (
                  <button type="button" className="small" onClick={() => doRollback(v.version)} aria-label={`Roll back to version ${v.version}`}>
                    Roll back
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {diff && (
        <div>
          <h3>{diff.title}</h3>
          <DiffView text={diff.text} />
          <button type="button" className="small" onClick={() => setDiff(null)}>
            Close diff
          </button>
        </div>
      )}
    </section>
  );
}

export function DiffView({ text }: { text: string }) {
  return (
    <pre className="code diff" aria-label="diff">
      {text.split('\n').map((line, i) => (
        <div key={i} className={line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : line.startsWith('@@') ? 'hunk' : ''}>
          {line || ' '}
        </div>
      ))}
    </pre>
  );
}
