import { FormEvent, useState } from 'react';
import { NavLink, useParams } from 'react-router-dom';
import { api, qs } from '../api';
import { ErrorBox, errorText, fmtTime, useApi } from '../util';
import { useCursorList, VirtualTable, type Column } from '../VirtualTable';
import Connections from './Connections';

type Row = Record<string, unknown>;
const ROLES = ['viewer', 'operator', 'editor', 'admin'];

function asItems(d: unknown): Row[] {
  if (Array.isArray(d)) return d as Row[];
  if (d && typeof d === 'object' && Array.isArray((d as { items?: unknown }).items)) return (d as { items: Row[] }).items;
  return [];
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' && v > 1e9 && v < 1e11) return fmtTime(new Date(v * 1000).toISOString());
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function Table({ rows, cols, actions }: { rows: Row[]; cols: string[]; actions?: (r: Row) => React.ReactNode }) {
  return (
    <table className="list">
      <thead>
        <tr>
          {cols.map((c) => (
            <th scope="col" key={c}>
              {c.replace('_', ' ')}
            </th>
          ))}
          {actions && <th scope="col">actions</th>}
        </tr>
      </thead>
      <tbody>
        {rows.map((r, i) => (
          <tr key={String(r.id ?? r.name ?? i)}>
            {cols.map((c) => (
              <td key={c}>{cell(r[c])}</td>
            ))}
            {actions && <td className="actions">{actions(r)}</td>}
          </tr>
        ))}
        {!rows.length && (
          <tr>
            <td colSpan={cols.length + 1} className="muted">
              Nothing here.
            </td>
          </tr>
        )}
      </tbody>
    </table>
  );
}

function useAction(reload: () => unknown) {
  const [error, setError] = useState<string | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const run = async (fn: () => Promise<unknown>, done?: string) => {
    setError(null);
    setOk(null);
    try {
      await fn();
      if (done) setOk(done);
      await reload();
      return true;
    } catch (e) {
      setError(errorText(e));
      return false;
    }
  };
  const view = (
    <>
      <ErrorBox error={error} />
      {ok && (
        <p role="status" className="ok">
          {ok}
        </p>
      )}
    </>
  );
  return { run, view };
}

function Users() {
  const users = useApi<unknown>('/api/v1/users');
  const { run, view } = useAction(users.reload);
  const [f, setF] = useState({ name: '', password: '', role: 'viewer', namespace: '' });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body: Row = { name: f.name, password: f.password, role: f.role };
    if (f.namespace) body.namespace = f.namespace;
    if (await run(() => api('/api/v1/users', { method: 'POST', json: body }), `User ${f.name} created.`)) setF({ ...f, name: '', password: '' });
  };
  return (
    <>
      <ErrorBox error={users.error} />
      {view}
      <Table
        rows={asItems(users.data)}
        cols={['name', 'disabled', 'roles', 'created_at', 'last_login_at']}
        actions={(u) => (
          <>
            <button type="button" className="small" onClick={() => run(() => api(`/api/v1/users/${encodeURIComponent(String(u.name))}`, { method: 'PATCH', json: { disabled: !u.disabled } }))}>
              {u.disabled ? 'Enable' : 'Disable'} {String(u.name)}
            </button>
            <button
              type="button"
              className="small danger"
              onClick={() => window.confirm(`Delete user ${u.name}?`) && run(() => api(`/api/v1/users/${encodeURIComponent(String(u.name))}`, { method: 'DELETE' }))}
            >
              Delete {String(u.name)}
            </button>
          </>
        )}
      />
      <form className="card inline-form" onSubmit={submit} aria-labelledby="new-user">
        <h2 id="new-user">New user</h2>
        <label>
          User name
          <input value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} required />
        </label>
        <label>
          Password
          <input type="password" autoComplete="new-password" value={f.password} onChange={(e) => setF({ ...f, password: e.target.value })} required minLength={12} />
        </label>
        <label>
          Role
          <select value={f.role} onChange={(e) => setF({ ...f, role: e.target.value })}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Namespace (empty = global)
          <input value={f.namespace} onChange={(e) => setF({ ...f, namespace: e.target.value })} />
        </label>
        <button type="submit">Create user</button>
      </form>
    </>
  );
}

function Roles() {
  const roles = useApi<unknown>('/api/v1/roles');
  const { run, view } = useAction(roles.reload);
  const [f, setF] = useState({ subject: '', role: 'viewer', namespace: '' });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body: Row = { subject: f.subject, role: f.role };
    if (f.namespace) body.namespace = f.namespace;
    await run(() => api('/api/v1/roles', { method: 'POST', json: body }), 'Role granted.');
  };
  return (
    <>
      <ErrorBox error={roles.error} />
      {view}
      <Table
        rows={asItems(roles.data)}
        cols={['id', 'subject', 'role', 'namespace', 'created_at']}
        actions={(r) => (
          <button type="button" className="small danger" onClick={() => run(() => api(`/api/v1/roles/${r.id}`, { method: 'DELETE' }), 'Role revoked.')}>
            Revoke binding {String(r.id)}
          </button>
        )}
      />
      <form className="card inline-form" onSubmit={submit} aria-labelledby="grant">
        <h2 id="grant">Grant a role</h2>
        <label>
          Subject (user:NAME or token:ID)
          <input value={f.subject} onChange={(e) => setF({ ...f, subject: e.target.value })} required />
        </label>
        <label>
          Role
          <select value={f.role} onChange={(e) => setF({ ...f, role: e.target.value })}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Namespace (empty = global)
          <input value={f.namespace} onChange={(e) => setF({ ...f, namespace: e.target.value })} />
        </label>
        <button type="submit">Grant</button>
      </form>
    </>
  );
}

const SCOPES = ['workflows:read', 'workflows:write', 'runs:read', 'runs:write', 'runs:approve', 'events:write', 'secrets:read', 'secrets:write', 'admin'];

function Tokens() {
  const tokens = useApi<unknown>('/api/v1/tokens');
  const { run, view } = useAction(tokens.reload);
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['workflows:read', 'runs:read']);
  const [days, setDays] = useState('30');
  const [created, setCreated] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body: Row = { name, scopes };
    if (days) body.expires_in = Number(days) * 86400;
    await run(async () => {
      const t = await api<{ token: string }>('/api/v1/tokens', { method: 'POST', json: body });
      setCreated(t.token);
    });
  };
  return (
    <>
      <ErrorBox error={tokens.error} />
      {view}
      {created && (
        <div className="card ok" role="status">
          <p>Copy the token now: it is shown only once.</p>
          <label>
            New token
            <input readOnly value={created} onFocus={(e) => e.target.select()} />
          </label>
          <button type="button" className="small" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      <Table
        rows={asItems(tokens.data)}
        cols={['id', 'name', 'prefix', 'owner', 'scopes', 'expires_at', 'last_used_at']}
        actions={(t) => (
          <button type="button" className="small danger" onClick={() => run(() => api(`/api/v1/tokens/${t.id}`, { method: 'DELETE' }), 'Token revoked.')}>
            Revoke token {String(t.id)}
          </button>
        )}
      />
      <form className="card inline-form" onSubmit={submit} aria-labelledby="new-token">
        <h2 id="new-token">New API token</h2>
        <label>
          Token name
          <input value={name} onChange={(e) => setName(e.target.value)} required />
        </label>
        <fieldset>
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label key={s} className="check">
              <input type="checkbox" checked={scopes.includes(s)} onChange={(e) => setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))} />
              {s}
            </label>
          ))}
        </fieldset>
        <label>
          Expires in days (empty = never)
          <input type="number" min={1} value={days} onChange={(e) => setDays(e.target.value)} />
        </label>
        <button type="submit">Create token</button>
      </form>
    </>
  );
}

function Secrets() {
  const [ns, setNs] = useState('');
  const secrets = useApi<unknown>(`/api/v1/secrets${qs({ namespace: ns })}`, [ns]);
  const { run, view } = useAction(secrets.reload);
  const [f, setF] = useState({ namespace: 'default', name: '', value: '' });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    // The value leaves the page as it is sent (not after the answer): a secret is never
    // on screen longer than it has to be; it comes back only if saving failed.
    const { namespace, name, value } = f;
    setF((cur) => ({ ...cur, value: '' }));
    const ok = await run(
      () => api(`/api/v1/secrets/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, { method: 'PUT', json: { value } }),
      `Secret ${namespace}/${name} saved.`,
    );
    setF((cur) => (ok ? { ...cur, name: '' } : { ...cur, value }));
  };
  return (
    <>
      <label>
        Filter by namespace
        <input value={ns} onChange={(e) => setNs(e.target.value)} />
      </label>
      <ErrorBox error={secrets.error} />
      {view}
      <Table
        rows={asItems(secrets.data)}
        cols={['namespace', 'name', 'updated_at', 'updated_by']}
        actions={(s) => (
          <button
            type="button"
            className="small danger"
            onClick={() =>
              window.confirm(`Delete secret ${s.namespace}/${s.name}?`) &&
              run(() => api(`/api/v1/secrets/${encodeURIComponent(String(s.namespace))}/${encodeURIComponent(String(s.name))}`, { method: 'DELETE' }), 'Secret deleted.')
            }
          >
            Delete {String(s.name)}
          </button>
        )}
      />
      <form className="card inline-form" onSubmit={submit} aria-labelledby="set-secret">
        <h2 id="set-secret">Set a secret (write-only: values are never shown)</h2>
        <label>
          Secret namespace
          <input value={f.namespace} onChange={(e) => setF({ ...f, namespace: e.target.value })} required />
        </label>
        <label>
          Secret name
          <input value={f.name} pattern="[A-Za-z_][A-Za-z0-9_]*" onChange={(e) => setF({ ...f, name: e.target.value })} required />
        </label>
        <label>
          Value
          <input type="password" autoComplete="off" value={f.value} onChange={(e) => setF({ ...f, value: e.target.value })} required />
        </label>
        <button type="submit">Save secret</button>
      </form>
    </>
  );
}

const AUDIT_COLS = ['seq', 'at', 'actor', 'action', 'resource', 'outcome', 'source', 'request_id'];
const AUDIT_WIDTHS: Record<string, string> = { seq: '4.5rem', at: '14.5rem', outcome: '6.5rem', actor: '8rem', source: '8rem' };

function Audit() {
  const [f, setF] = useState({ actor: '', action: '', outcome: '', since: '', until: '' });
  const list = useCursorList<Row>((cursor) => `/api/v1/audit${qs({ ...f, cursor, limit: 100 })}`, JSON.stringify(f));
  const verify = useApi<Row>('/api/v1/audit/verify');
  const set = (k: keyof typeof f, v: string) => setF({ ...f, [k]: v });
  const columns: Column<Row>[] = AUDIT_COLS.map((c) => ({
    header: c.replace('_', ' '),
    width: AUDIT_WIDTHS[c],
    cell: (r) => (
      <span className="ellipsis" title={cell(r[c])}>
        {cell(r[c])}
      </span>
    ),
  }));
  return (
    <>
      {verify.data && (
        <p className={verify.data.ok ? 'ok' : 'error'}>
          Hash chain {verify.data.ok ? 'intact' : 'BROKEN'}: {String(verify.data.checked)} entries checked.
        </p>
      )}
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Actor
          <input value={f.actor} onChange={(e) => set('actor', e.target.value)} />
        </label>
        <label>
          Action (prefix)
          <input value={f.action} onChange={(e) => set('action', e.target.value)} />
        </label>
        <label>
          Outcome
          <select value={f.outcome} onChange={(e) => set('outcome', e.target.value)}>
            <option value="">any</option>
            <option>success</option>
            <option>denied</option>
            <option>failed</option>
          </select>
        </label>
        <label>
          Since
          <input type="date" value={f.since} onChange={(e) => set('since', e.target.value)} />
        </label>
        <label>
          Until
          <input type="date" value={f.until} onChange={(e) => set('until', e.target.value)} />
        </label>
      </form>
      <ErrorBox error={list.error} />
      <VirtualTable list={list} columns={columns} rowKey={(r) => String(r.seq)} label="Audit log, newest first" noun="entries" height="calc(100vh - 330px)" />
    </>
  );
}

const TABS: Record<string, [string, () => React.ReactElement]> = {
  users: ['Users', Users],
  roles: ['Roles', Roles],
  tokens: ['API tokens', Tokens],
  secrets: ['Secrets', Secrets],
  connections: ['Connections', Connections],
  audit: ['Audit log', Audit],
};

export default function Admin() {
  const { tab = 'users' } = useParams();
  const [title, Comp] = TABS[tab] ?? TABS.users;
  return (
    <section aria-labelledby="admin-title">
      <h1 id="admin-title">Administration</h1>
      <nav className="subnav" aria-label="Administration">
        {Object.entries(TABS).map(([k, [t]]) => (
          <NavLink key={k} to={`/admin/${k}`} className={() => (k === tab ? 'active' : '')}>
            {t}
          </NavLink>
        ))}
      </nav>
      <h2>{title}</h2>
      <Comp />
    </section>
  );
}
