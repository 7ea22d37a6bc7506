// Alerts (`GET /api/v1/alerts`): what fires now, first, then what is pending and what
// resolved recently; and the alert rules, which editors create, change and delete when
// they came from the API (a rule of alerts.yaml is changed in that file).
import { lazy, Suspense, useMemo, useState } from 'react';
import { Link, NavLink, useParams, useSearchParams } from 'react-router-dom';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { api, ApiError, qs } from '../api';
import { SchemaForm } from '../editor/SchemaForm';
import { fieldsFor, validateForm } from '../editor/schemaForm';
import { hasRole, useMe } from '../me';
import { ErrorBox, errorText, fmtTime, useApi, usePoll } from '../util';
import { type Alert, type AlertRule, changeKind, KIND_FIELDS, KINDS, NEW_RULE, ruleProblems, ruleSchema, ruleSettings, sortAlerts, valueText } from './alerts';
import { setPath } from './connections';

const YamlEditor = lazy(() => import('../editor/YamlEditor'));

/** How often the open page asks again (the server evaluates every 30 s by default). */
const POLL_MS = 10_000;

export default function Alerts() {
  const { tab = 'current' } = useParams();
  return (
    <section aria-labelledby="alerts-title">
      <h1 id="alerts-title">Alerts</h1>
      <nav className="subnav" aria-label="Alerts">
        <NavLink to="/alerts" end>
          Current and recent
        </NavLink>
        <NavLink to="/alerts/rules">Rules</NavLink>
      </nav>
      {tab === 'rules' ? <Rules /> : <AlertList />}
    </section>
  );
}

function StateBadge({ state }: { state: string }) {
  return <span className={`badge alert-${state}`}>{state}</span>;
}

function SeverityBadge({ severity }: { severity: string }) {
  return <span className={`badge sev-${severity}`}>{severity}</span>;
}

function Labels({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) return <span className="muted">—</span>;
  return (
    <>
      {entries.map(([k, v]) => (
        <span className="tag" key={k}>
          {k}: {v}
        </span>
      ))}
    </>
  );
}

function AlertList() {
  const [params, setParams] = useSearchParams();
  const state = params.get('state') ?? '';
  const rule = params.get('rule') ?? '';
  const alerts = useApi<{ items: Alert[] }>(`/api/v1/alerts${qs({ state, rule, limit: 500 })}`);
  const rules = useApi<{ items: AlertRule[] }>('/api/v1/alerts/rules');
  usePoll(alerts.reload, POLL_MS);
  const kinds = useMemo(() => Object.fromEntries((rules.data?.items ?? []).map((r) => [r.name, r.kind])), [rules.data]);
  const items = useMemo(() => sortAlerts(alerts.data?.items ?? []), [alerts.data]);
  const firing = items.filter((a) => a.state === 'firing').length;
  const pending = items.filter((a) => a.state === 'pending').length;

  const set = (key: string, value: string) => {
    const p = new URLSearchParams(params);
    if (value) p.set(key, value);
    else p.delete(key);
    setParams(p, { replace: true });
  };

  return (
    <>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          State
          <select value={state} onChange={(e) => set('state', e.target.value)}>
            <option value="">any</option>
            <option>firing</option>
            <option>pending</option>
            <option>resolved</option>
          </select>
        </label>
        <label>
          Rule
          <select value={rule} onChange={(e) => set('rule', e.target.value)}>
            <option value="">any</option>
            {(rules.data?.items ?? []).map((r) => (
              <option key={r.name}>{r.name}</option>
            ))}
          </select>
        </label>
        <p className="muted" role="status" aria-live="polite">
          {alerts.data ? `${firing} firing, ${pending} pending · refreshed every ${POLL_MS / 1000} s` : 'Loading…'}
        </p>
      </form>
      <ErrorBox error={alerts.error} />
      <table className="list alerts" aria-label="Alerts, firing first">
        <thead>
          <tr>
            <th scope="col">State</th>
            <th scope="col">Severity</th>
            <th scope="col">Rule</th>
            <th scope="col">What</th>
            <th scope="col">Value / threshold</th>
            <th scope="col">Since</th>
            <th scope="col">Labels</th>
          </tr>
        </thead>
        <tbody>
          {items.map((a) => {
            const run = typeof a.info?.run_id === 'string' ? a.info.run_id : null;
            return (
              <tr key={`${a.rule}\u0000${a.key}\u0000${a.id ?? 'p'}`} className={`alert-row alert-row-${a.state}`}>
                <td>
                  <StateBadge state={a.state} />
                </td>
                <td>
                  <SeverityBadge severity={a.severity} />
                </td>
                <td>
                  <strong>{a.rule}</strong>
                  <div className="muted">{a.key}</div>
                </td>
                <td>
                  {a.summary}
                  {run && (
                    <div>
                      <Link to={`/runs/${encodeURIComponent(run)}`}>run {run.slice(0, 13)}…</Link>
                    </div>
                  )}
                </td>
                <td className="mono">{valueText(a, kinds[a.rule])}</td>
                <td>
                  {fmtTime(a.since)}
                  {a.resolved_at && <div className="muted">resolved {fmtTime(a.resolved_at)}</div>}
                </td>
                <td>
                  <Labels labels={a.labels} />
                </td>
              </tr>
            );
          })}
          {!items.length && !alerts.loading && (
            <tr>
              <td colSpan={7} className="muted">
                No alerts{state ? ` ${state}` : ''}. Rules are evaluated every 30 s by default.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </>
  );
}

function Rules() {
  const me = useMe();
  const canEdit = hasRole(me, 'editor');
  const rules = useApi<{ items: AlertRule[] }>('/api/v1/alerts/rules');
  const [editing, setEditing] = useState<{ name: string; spec: Record<string, unknown>; isNew: boolean } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const items = rules.data?.items ?? [];

  const remove = async (r: AlertRule) => {
    if (!window.confirm(`Delete alert rule ${r.name}? Its open alerts close without a notice.`)) return;
    setError(null);
    setOk(null);
    try {
      await api(`/api/v1/alerts/rules/${encodeURIComponent(r.name)}`, { method: 'DELETE' });
      setOk(`Rule ${r.name} deleted.`);
      if (editing?.name === r.name) setEditing(null);
      await rules.reload();
    } catch (e) {
      setError(errorText(e));
    }
  };

  return (
    <>
      <ErrorBox error={rules.error ?? error} />
      {ok && (
        <p role="status" className="ok">
          {ok}
        </p>
      )}
      {canEdit && !editing && (
        <p>
          <button type="button" onClick={() => setEditing({ name: '', spec: { ...NEW_RULE }, isNew: true })}>
            New rule
          </button>
        </p>
      )}
      {editing && (
        <RuleEditor
          key={editing.isNew ? '\u0000new' : editing.name}
          initial={editing}
          onCancel={() => setEditing(null)}
          onSaved={async (name) => {
            setEditing(null);
            setError(null);
            setOk(`Rule ${name} saved.`);
            await rules.reload();
          }}
        />
      )}
      <table className="list" aria-label="Alert rules">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Kind</th>
            <th scope="col">Severity</th>
            <th scope="col">Settings</th>
            <th scope="col">Channels</th>
            <th scope="col">Source</th>
            <th scope="col">Updated</th>
            {canEdit && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {items.map((r) => (
            <tr key={r.name} className={r.enabled ? undefined : 'disabled'} data-rule={r.name}>
              <td>
                <strong>{r.name}</strong>
                {!r.enabled && <div className="muted">disabled</div>}
                {typeof r.spec.description === 'string' && r.spec.description && <div className="muted">{r.spec.description}</div>}
              </td>
              <td>{r.kind}</td>
              <td>
                <span className={`badge sev-${r.severity}`}>{r.severity}</span>
              </td>
              <td className="mono small-text">{ruleSettings(r) || <span className="muted">defaults</span>}</td>
              <td>{r.channels.length ? r.channels.map((c) => <span className="tag" key={c}>{c}</span>) : <span className="muted">none</span>}</td>
              <td>
                <span className="tag" title={r.source === 'file' ? 'From $PLAIT_HOME/alerts.yaml: change it there' : 'Set through the API'}>
                  {r.source === 'file' ? 'alerts.yaml' : 'api'}
                </span>
              </td>
              <td>
                {fmtTime(r.updated_at)}
                {r.updated_by && <div className="muted">by {r.updated_by}</div>}
              </td>
              {canEdit && (
                <td className="actions">
                  {r.source === 'api' ? (
                    <>
                      <button type="button" className="small" onClick={() => setEditing({ name: r.name, spec: r.spec, isNew: false })}>
                        Edit {r.name}
                      </button>
                      <button type="button" className="small danger" onClick={() => remove(r)}>
                        Delete {r.name}
                      </button>
                    </>
                  ) : (
                    <span className="muted">edit alerts.yaml</span>
                  )}
                </td>
              )}
            </tr>
          ))}
          {!items.length && !rules.loading && (
            <tr>
              <td colSpan={canEdit ? 8 : 7} className="muted">
                No rules. {canEdit ? 'Create one here, ' : ''}write $PLAIT_HOME/alerts.yaml or use plait alerts set.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </>
  );
}

function omitKind(spec: Record<string, unknown>): Record<string, unknown> {
  const { kind: _kind, ...rest } = spec; // eslint-disable-line @typescript-eslint/no-unused-vars
  return rest;
}

function toYaml(spec: Record<string, unknown>): string {
  const { kind, ...rest } = spec;
  return stringifyYaml({ kind, ...rest }, { lineWidth: 0 });
}

function RuleEditor({
  initial,
  onCancel,
  onSaved,
}: {
  initial: { name: string; spec: Record<string, unknown>; isNew: boolean };
  onCancel: () => void;
  onSaved: (name: string) => void;
}) {
  const [name, setName] = useState(initial.name);
  const [spec, setSpec] = useState<Record<string, unknown>>(initial.spec);
  const [mode, setMode] = useState<'form' | 'yaml'>('form');
  const [yamlText, setYamlText] = useState('');
  const [yamlError, setYamlError] = useState<string | null>(null);
  const [server, setServer] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [tried, setTried] = useState(false);
  const kind = typeof spec.kind === 'string' ? spec.kind : '';
  const schema = useMemo(() => ruleSchema(kind), [kind]);
  const fields = useMemo(() => fieldsFor(schema), [schema]);
  const local = KINDS.includes(kind) ? validateForm(fields, omitKind(spec), schema) : {};
  const problems = { ...local, ...server };
  const shownProblems = tried ? problems : { ...server };
  const heading = initial.isNew ? 'New alert rule' : `Edit rule ${initial.name}`;

  const switchTo = (next: 'form' | 'yaml') => {
    if (next === mode) return;
    if (next === 'yaml') {
      setYamlText(toYaml(spec));
      setYamlError(null);
    } else if (yamlError) {
      return; // stay on the text until it reads
    }
    setMode(next);
  };

  const onYaml = (text: string) => {
    setYamlText(text);
    try {
      const parsed = parseYaml(text) as unknown;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('a rule is a mapping with a kind');
      setSpec(parsed as Record<string, unknown>);
      setYamlError(null);
    } catch (e) {
      setYamlError(`not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  };

  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setTried(true);
    setError(null);
    setServer({});
    if (yamlError) return setError(yamlError);
    if (!KINDS.includes(kind)) return setError(`kind must be one of ${KINDS.join(', ')}`);
    if (Object.keys(local).length) return setError('Fix the marked fields first.');
    try {
      await api(`/api/v1/alerts/rules/${encodeURIComponent(name)}`, { method: 'PUT', json: spec });
      onSaved(name);
    } catch (err) {
      setError(errorText(err));
      if (err instanceof ApiError) setServer(ruleProblems(err.details));
    }
  };

  return (
    <form className="card rule-editor" onSubmit={save} aria-labelledby="rule-editor-title" noValidate>
      <h2 id="rule-editor-title">{heading}</h2>
      <div className="inline-form">
        <label>
          Rule name
          <input value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9][A-Za-z0-9_.\-]*" readOnly={!initial.isNew} />
        </label>
        {mode === 'form' && (
          <label>
            Kind
            <select value={kind} onChange={(e) => setSpec(changeKind(spec, e.target.value))}>
              {!KINDS.includes(kind) && <option value={kind}>{kind || '(choose)'}</option>}
              {KINDS.map((k) => (
                <option key={k}>{k}</option>
              ))}
            </select>
          </label>
        )}
        <div className="tabs" role="tablist" aria-label="Edit as">
          <button type="button" role="tab" aria-selected={mode === 'form'} onClick={() => switchTo('form')}>
            Form
          </button>
          <button type="button" role="tab" aria-selected={mode === 'yaml'} onClick={() => switchTo('yaml')}>
            YAML
          </button>
        </div>
      </div>
      {mode === 'form' ? (
        <div className="rule-form">
          {KIND_FIELDS[kind] && <p className="help">{KIND_FIELDS[kind].description}</p>}
          <div className="form-grid">
            <SchemaForm fields={fields} values={omitKind(spec)} errors={shownProblems} idPrefix="rule" onSet={(path, value) => setSpec((s) => setPath(s, path, value))} />
          </div>
        </div>
      ) : (
        <Suspense fallback={<p aria-busy="true">Loading the editor…</p>}>
          <p className="help">The rule as in alerts.yaml, without its name: kind, threshold, severity, for, channels, …</p>
          <YamlEditor value={yamlText} onChange={onYaml} label="Rule as YAML" />
          {yamlError && <p className="field-error">{yamlError}</p>}
        </Suspense>
      )}
      {shownProblems._ && <p className="field-error">{shownProblems._}</p>}
      <ErrorBox error={error} />
      <div className="actions">
        <button type="submit" disabled={!name}>
          Save rule
        </button>
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
