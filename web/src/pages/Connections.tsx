// Administration › Connections: named, typed credential sets that steps use by name.
// The form of each type is generated from its JSON Schema (`GET /api/v1/connection-types`)
// by the editor's schema-form code; credentials are write-only: a stored one shows as
// "set", an empty input keeps it, and only the "clear" box removes it.
import { FormEvent, useMemo, useState } from 'react';
import { api, ApiError, qs } from '../api';
import { SchemaForm } from '../editor/SchemaForm';
import type { FormField } from '../editor/schemaForm';
import { hasRole, useMe } from '../me';
import { ErrorBox, errorText, fmtTime, useApi } from '../util';
import { useCursorList, VirtualTable, type Column } from '../VirtualTable';
import {
  configSummary,
  type Connection,
  CONNECTION_NAME,
  CONNECTION_NAMESPACE,
  connectionBody,
  connectionFields,
  connectionProblems,
  type ConnectionType,
  serverProblems,
  setPath,
} from './connections';

interface Editing {
  namespace: string;
  name: string;
  type: string;
  values: Record<string, unknown>;
  stored: Record<string, boolean>;
  isNew: boolean;
}

interface TestResult {
  ok: boolean;
  message: string;
}

function path(c: { namespace: string; name: string }): string {
  return `/api/v1/connections/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}`;
}

export default function Connections() {
  const me = useMe();
  const [ns, setNs] = useState('');
  const list = useCursorList<Connection>((cursor) => `/api/v1/connections${qs({ namespace: ns, cursor, limit: 200 })}`, ns);
  const types = useApi<{ items: ConnectionType[]; unavailable: Record<string, string> }>('/api/v1/connection-types');
  const [editing, setEditing] = useState<Editing | null>(null);
  const [tests, setTests] = useState<Record<string, TestResult | 'testing'>>({});
  const [error, setError] = useState<string | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const canWrite = (namespace: string) => hasRole(me, 'editor', namespace === '*' ? null : namespace);
  const canTest = (namespace: string) => hasRole(me, 'operator', namespace === '*' ? null : namespace);
  const byName = useMemo(() => Object.fromEntries((types.data?.items ?? []).map((t) => [t.name, t])), [types.data]);

  const test = async (c: Connection) => {
    const key = `${c.namespace}/${c.name}`;
    setTests((t) => ({ ...t, [key]: 'testing' }));
    try {
      const r = await api<TestResult>(`${path(c)}/test`, { method: 'POST' });
      setTests((t) => ({ ...t, [key]: r }));
    } catch (e) {
      setTests((t) => ({ ...t, [key]: { ok: false, message: errorText(e) } }));
    }
  };

  const remove = async (c: Connection) => {
    if (!window.confirm(`Delete connection ${c.namespace}/${c.name}? Steps that use it fail from then on.`)) return;
    setError(null);
    setOk(null);
    try {
      await api(path(c), { method: 'DELETE' });
      setOk(`Connection ${c.namespace}/${c.name} deleted.`);
      if (editing && editing.namespace === c.namespace && editing.name === c.name) setEditing(null);
      list.reload();
    } catch (e) {
      setError(errorText(e));
    }
  };

  const columns: Column<Connection>[] = [
    { header: 'Namespace', width: '8rem', cell: (c) => (c.namespace === '*' ? <span title="global: every namespace">* (global)</span> : c.namespace) },
    { header: 'Name', width: '11rem', cell: (c) => <strong>{c.name}</strong> },
    { header: 'Type', width: '7rem', cell: (c) => c.type },
    {
      header: 'Settings',
      cell: (c) => (
        <span className="ellipsis mono" title={configSummary(c.config)}>
          {configSummary(c.config) || <span className="muted">—</span>}
        </span>
      ),
    },
    {
      header: 'Credentials',
      width: '12rem',
      cell: (c) => {
        const entries = Object.entries(c.secrets);
        const text = entries.map(([k, set]) => `${k}: ${set ? 'set' : 'not set'}`).join(', ');
        return (
          <span className="ellipsis" title={text}>
            {entries.length ? entries.map(([k, set]) => <span key={k} className={`tag ${set ? 'set' : 'unset'}`}>{`${k}: ${set ? 'set' : 'not set'}`}</span>) : <span className="muted">none</span>}
          </span>
        );
      },
    },
    {
      header: 'Test',
      width: '14rem',
      cell: (c) => {
        const r = tests[`${c.namespace}/${c.name}`];
        if (!r) return <span className="muted">—</span>;
        if (r === 'testing') return <span aria-busy="true">testing…</span>;
        return (
          <span className={`ellipsis ${r.ok ? 'ok' : 'bad'}`} title={r.message} role="status">
            {r.ok ? '✓ ok' : '✗ failed'}: {r.message}
          </span>
        );
      },
    },
    { header: 'Updated', width: '11rem', cell: (c) => <span title={c.updated_by ? `by ${c.updated_by}` : undefined}>{fmtTime(c.updated_at)}</span> },
    {
      header: 'Actions',
      width: '15rem',
      cell: (c) => (
        <span className="actions nowrap">
          {canTest(c.namespace) && (
            <button type="button" className="small secondary" onClick={() => test(c)} aria-label={`Test ${c.namespace}/${c.name}`}>
              Test
            </button>
          )}
          {canWrite(c.namespace) && (
            <>
              <button
                type="button"
                className="small"
                aria-label={`Edit ${c.namespace}/${c.name}`}
                onClick={() => setEditing({ namespace: c.namespace, name: c.name, type: c.type, values: { ...c.config }, stored: c.secrets, isNew: false })}
              >
                Edit
              </button>
              <button type="button" className="small danger" aria-label={`Delete ${c.namespace}/${c.name}`} onClick={() => remove(c)}>
                Delete
              </button>
            </>
          )}
        </span>
      ),
    },
  ];

  const firstType = types.data?.items.find((t) => t.name === 'http')?.name ?? types.data?.items[0]?.name ?? '';
  return (
    <>
      <p className="help">
        A step names a connection (<code>connection: NAME</code>) instead of carrying hosts and passwords; credentials are stored encrypted and never shown again. Namespace <code>*</code> holds global
        connections, used by every namespace after its own.
      </p>
      <div className="filters">
        <label>
          Filter by namespace
          <input value={ns} onChange={(e) => setNs(e.target.value.trim())} />
        </label>
        {!editing && (
          <button type="button" onClick={() => setEditing({ namespace: 'default', name: '', type: firstType, values: {}, stored: {}, isNew: true })} disabled={!types.data}>
            New connection
          </button>
        )}
      </div>
      <ErrorBox error={list.error ?? types.error ?? error} />
      {ok && (
        <p role="status" className="ok">
          {ok}
        </p>
      )}
      {editing && types.data && (
        <ConnectionForm
          key={editing.isNew ? '\u0000new' : `${editing.namespace}/${editing.name}`}
          initial={editing}
          types={types.data.items}
          unavailable={types.data.unavailable}
          byName={byName}
          onCancel={() => setEditing(null)}
          onSaved={(c, created) => {
            setEditing(null);
            setError(null);
            setOk(`Connection ${c.namespace}/${c.name} ${created ? 'created' : 'saved'}.`);
            list.reload();
          }}
        />
      )}
      <VirtualTable list={list} columns={columns} rowKey={(c) => `${c.namespace}/${c.name}`} label="Connections by namespace and name" empty="No connections." noun="connections" nounOne="connection" height="calc(100vh - 360px)" rowHeight={44} />
    </>
  );
}

function ConnectionForm({
  initial,
  types,
  unavailable,
  byName,
  onCancel,
  onSaved,
}: {
  initial: Editing;
  types: ConnectionType[];
  unavailable: Record<string, string>;
  byName: Record<string, ConnectionType>;
  onCancel: () => void;
  onSaved: (c: Connection, created: boolean) => void;
}) {
  const [namespace, setNamespace] = useState(initial.namespace);
  const [name, setName] = useState(initial.name);
  const [typeName, setTypeName] = useState(initial.type);
  const [values, setValues] = useState<Record<string, unknown>>(initial.values);
  const [cleared, setCleared] = useState<string[]>([]);
  const [server, setServer] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [tried, setTried] = useState(false);
  const [saving, setSaving] = useState(false);
  const type = byName[typeName];
  const fields = useMemo(() => (type ? connectionFields(type) : []), [type]);
  // credentials are kept across a save only when the type stays the same
  const stored = typeName === initial.type ? initial.stored : {};
  const local = type ? connectionProblems(type, fields, values, stored, cleared) : {};
  const shown = tried ? { ...local, ...server } : server;
  const nameProblem = !CONNECTION_NAME.test(name) ? 'letters, digits, _, - and ., starting with a letter or digit' : null;
  const nsProblem = !CONNECTION_NAMESPACE.test(namespace) ? 'lower-case letters, digits, - and _, or * for a global connection' : null;

  const placeholder = (f: FormField) => (f.secret && stored[f.name] && !cleared.includes(f.name) ? 'set — leave empty to keep it' : undefined);
  const extra = (f: FormField) => {
    if (!f.secret) return null;
    if (!stored[f.name]) return <small className="help">Write-only: stored encrypted, never shown again.</small>;
    const what = f.label.replace(/ \(credential\)$/, '').toLowerCase();
    return (
      <div className="secret-state">
        <span className="badge set">set</span>
        <label className="check inline small-text">
          <input
            type="checkbox"
            aria-label={`Clear the stored ${what}`}
            checked={cleared.includes(f.name)}
            onChange={(e) => setCleared(e.target.checked ? [...cleared, f.name] : cleared.filter((x) => x !== f.name))}
          />
          clear it
        </label>
      </div>
    );
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    setError(null);
    setServer({});
    if (nameProblem || nsProblem || !type) return setError(nameProblem ? `Name: ${nameProblem}` : nsProblem ? `Namespace: ${nsProblem}` : 'Choose a type.');
    if (Object.keys(local).length) return setError('Fix the marked fields first.');
    setSaving(true);
    try {
      const body = connectionBody(typeName, values, type.secret_fields, cleared);
      const saved = await api<Connection>(path({ namespace, name }), { method: 'PUT', json: body });
      onSaved(saved, initial.isNew);
    } catch (err) {
      setError(errorText(err));
      if (err instanceof ApiError) setServer(serverProblems(err.details));
    } finally {
      setSaving(false);
    }
  };

  return (
    <form className="card connection-form" onSubmit={save} aria-labelledby="conn-form-title" noValidate>
      <h2 id="conn-form-title">{initial.isNew ? 'New connection' : `Edit connection ${initial.namespace}/${initial.name}`}</h2>
      <div className="inline-form">
        <label>
          Connection namespace
          <input value={namespace} onChange={(e) => setNamespace(e.target.value.trim())} readOnly={!initial.isNew} aria-invalid={tried && !!nsProblem} required />
        </label>
        <label>
          Connection name
          <input value={name} onChange={(e) => setName(e.target.value.trim())} readOnly={!initial.isNew} aria-invalid={tried && !!nameProblem} required />
        </label>
        <label>
          Type
          <select
            value={typeName}
            onChange={(e) => {
              setTypeName(e.target.value);
              setValues({});
              setCleared([]);
              setServer({});
            }}
          >
            {types.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      {type && <p className="help">{type.description}</p>}
      {!initial.isNew && typeName !== initial.type && <p className="note">Changing the type drops the stored credentials: enter them again.</p>}
      {Object.keys(unavailable).length > 0 && (
        <p className="muted">
          Not available: {Object.entries(unavailable).map(([k, v]) => `${k} (${v})`).join('; ')}
        </p>
      )}
      <div className="form-grid">
        <SchemaForm
          fields={fields}
          values={values}
          errors={shown}
          idPrefix="conn"
          onSet={(p, v) => setValues((old) => setPath(old, p, v))}
          placeholder={placeholder}
          extra={extra}
        />
      </div>
      {shown._ && <p className="field-error">{shown._}</p>}
      <ErrorBox error={error} />
      <div className="actions">
        <button type="submit" disabled={saving}>
          {initial.isNew ? 'Create connection' : 'Save connection'}
        </button>
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
