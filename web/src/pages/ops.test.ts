import { fieldsFor, validateForm } from '../editor/schemaForm';
import { hasRole, type Me } from '../me';
import { type Alert, type AlertRule, changeKind, formatValue, ruleProblems, ruleSchema, ruleSettings, sortAlerts, valueText } from './alerts';
import { configSummary, connectionBody, connectionFields, connectionProblems, type ConnectionType, serverProblems, setPath } from './connections';
import { highlightParts, hitLink, type LogHit } from './logsearch';
import { fmtAge, heartbeatHealth } from './workers';

function alert(rule: string, state: Alert['state'], severity: string, since: string, resolved: string | null = null): Alert {
  return {
    id: state === 'pending' ? null : 1,
    rule,
    key: rule,
    state,
    severity,
    value: 0.5,
    threshold: 0.1,
    summary: '',
    labels: {},
    info: {},
    since,
    resolved_at: resolved,
    last_notified_at: null,
    notifications: 0,
  };
}

describe('alerts', () => {
  it('shows firing first (critical, then newest), then pending, then resolved by resolution', () => {
    const order = sortAlerts([
      alert('p-old', 'pending', 'critical', '2026-01-01T00:00:00Z'),
      alert('r-early', 'resolved', 'critical', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'),
      alert('f-warn-new', 'firing', 'warning', '2026-01-03T00:00:00Z'),
      alert('p-new', 'pending', 'info', '2026-01-02T00:00:00Z'),
      alert('f-crit-old', 'firing', 'critical', '2026-01-01T00:00:00Z'),
      alert('r-late', 'resolved', 'info', '2026-01-01T00:00:00Z', '2026-01-03T00:00:00Z'),
      alert('f-warn-old', 'firing', 'warning', '2026-01-02T00:00:00Z'),
    ]).map((a) => a.rule);
    expect(order).toEqual(['f-crit-old', 'f-warn-new', 'f-warn-old', 'p-new', 'p-old', 'r-late', 'r-early']);
  });

  it('writes values in the unit of the kind, as the server does', () => {
    expect(formatValue('ratio', 0.15)).toBe('15%');
    expect(formatValue('ratio', 1 / 3)).toBe('33.3%');
    expect(formatValue('duration', 0.85)).toBe('850ms');
    expect(formatValue('duration', 12.34)).toBe('12.3s');
    expect(formatValue('duration', 245)).toBe('4m05s');
    expect(formatValue('duration', 7380)).toBe('2h03m');
    expect(formatValue('flag', 1)).toBe('down');
    expect(formatValue('count', 3)).toBe('3');
    expect(formatValue('ratio', null)).toBe('—');
    expect(valueText(alert('x', 'firing', 'warning', ''), 'failure_rate')).toBe('50% / 10%');
    expect(valueText({ ...alert('x', 'firing', 'critical', ''), value: 1, threshold: null }, 'service_down')).toBe('down');
  });

  it('gives each kind a form: its own fields first, the required ones marked, then the common ones', () => {
    const fields = fieldsFor(ruleSchema('failure_rate'));
    expect(fields.map((f) => f.name).slice(0, 3)).toEqual(['threshold', 'window', 'workflow']);
    expect(fields.find((f) => f.name === 'threshold')).toMatchObject({ required: true, kind: 'scalar' });
    expect(fields.find((f) => f.name === 'severity')).toMatchObject({ kind: 'select', options: ['info', 'warning', 'critical'] });
    expect(fields.find((f) => f.name === 'channels')?.kind).toBe('yaml');
    const schema = ruleSchema('failure_rate');
    expect(validateForm(fields, { window: '1h' }, schema)).toEqual({ threshold: 'required' });
    expect(validateForm(fields, { threshold: '5%', min_runs: 0 }, schema)).toEqual({ min_runs: 'at least 1' });
    expect(validateForm(fields, { threshold: 0.05, url: 'x' }, schema)).toEqual({ _: 'unknown key: url' });
    expect(validateForm(fieldsFor(ruleSchema('service_down')), {}, ruleSchema('service_down'))).toEqual({ url: 'required' });
  });

  it('offers the anomaly kind with its score threshold and direction', () => {
    const fields = fieldsFor(ruleSchema('anomaly'));
    expect(fields.map((f) => f.name).slice(0, 2)).toEqual(['threshold', 'direction']);
    expect(fields.find((f) => f.name === 'direction')).toMatchObject({ kind: 'select', options: ['slow', 'fast', 'any'] });
    expect(validateForm(fields, {}, ruleSchema('anomaly'))).toEqual({});
    expect(formatValue('score', 4.25)).toBe('4.25');
  });

  it('keeps the common fields when the kind changes and drops the others', () => {
    expect(changeKind({ kind: 'failure_rate', threshold: '5%', min_runs: 3, severity: 'critical', channels: ['ops'] }, 'worker_silent')).toEqual({
      kind: 'worker_silent',
      threshold: '5%',
      severity: 'critical',
      channels: ['ops'],
    });
  });

  it("summarises a rule's settings and maps the server's problems to fields", () => {
    const rule = { kind: 'failure_rate', spec: { kind: 'failure_rate', threshold: '1%', window: '1h', min_runs: 20, for: '5m', channels: ['ops'] } } as unknown as AlertRule;
    expect(ruleSettings(rule)).toBe('threshold 1% · window 1h · min_runs 20 · for 5m');
    expect(
      ruleProblems([
        { message: "rule 'x': threshold: required for failure_rate rules" },
        { message: "rule 'x': for: a duration is a number of seconds or text like 30s" },
        { message: "rule 'x': labels.team: Input should be a valid string" },
        { message: "rule 'x': kind must be one of failure_rate, run_duration" },
      ]),
    ).toEqual({
      threshold: 'required for failure_rate rules',
      for: 'a duration is a number of seconds or text like 30s',
      labels: 'Input should be a valid string',
      _: 'kind must be one of failure_rate, run_duration',
    });
  });
});

const HTTP: ConnectionType = {
  name: 'http',
  description: 'An HTTP API',
  secret_fields: ['bearer_token', 'ssh_key'],
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['base_url', 'bearer_token'],
    properties: {
      base_url: { type: 'string', title: 'Base Url' },
      timeout: { type: 'number', minimum: 0 },
      bearer_token: { anyOf: [{ type: 'string', format: 'password', writeOnly: true }, { type: 'null' }], title: 'Bearer Token' },
      ssh_key: { anyOf: [{ type: 'string' }, { type: 'null' }], description: 'A private key (PEM/OpenSSH) for SSH.' },
    },
  },
};

describe('connections', () => {
  it('makes credential fields write-only: password inputs, a PEM key a text area', () => {
    const fields = connectionFields(HTTP);
    expect(fields.map((f) => [f.name, f.kind, !!f.secret])).toEqual([
      ['base_url', 'text', false],
      ['timeout', 'number', false],
      ['bearer_token', 'text', true],
      ['ssh_key', 'multiline', true],
    ]);
    expect(fields[2].label).toBe('Bearer Token (credential)');
  });

  it('sends no empty credential (the stored one is kept) and null for a cleared one', () => {
    expect(connectionBody('http', { base_url: 'https://x', bearer_token: '', ssh_key: undefined }, HTTP.secret_fields)).toEqual({
      type: 'http',
      config: { base_url: 'https://x' },
    });
    expect(connectionBody('http', { base_url: 'https://x', bearer_token: 'tok' }, HTTP.secret_fields, ['ssh_key'])).toEqual({
      type: 'http',
      config: { base_url: 'https://x', bearer_token: 'tok', ssh_key: null },
    });
  });

  it('does not ask again for a required credential that is stored, unless it is cleared', () => {
    const fields = connectionFields(HTTP);
    expect(connectionProblems(HTTP, fields, { base_url: 'https://x' })).toEqual({ bearer_token: 'required' });
    expect(connectionProblems(HTTP, fields, { base_url: 'https://x' }, { bearer_token: true })).toEqual({});
    expect(connectionProblems(HTTP, fields, { base_url: 'https://x' }, { bearer_token: true }, ['bearer_token'])).toEqual({ bearer_token: 'required' });
    expect(connectionProblems(HTTP, fields, { base_url: 'https://x', timeout: -1, bearer_token: 't' })).toEqual({ timeout: 'at least 0' });
  });

  it("puts the server's problems on their fields", () => {
    expect(
      serverProblems([
        { loc: ['config', 'port'], message: 'Input should be a valid integer' },
        { loc: ['config'], message: 'give at most one kind of credential' },
        { loc: ['type'], message: 'unknown connection type' },
      ]),
    ).toEqual({ port: 'Input should be a valid integer', _: 'give at most one kind of credential; unknown connection type' });
  });

  it('sets and removes nested values without changing the original', () => {
    const start = { a: 1, headers: { x: '1' } };
    expect(setPath(start, ['headers', 'y'], '2')).toEqual({ a: 1, headers: { x: '1', y: '2' } });
    expect(setPath(start, ['headers', 'x'], undefined)).toEqual({ a: 1 });
    expect(setPath(start, ['a'], undefined)).toEqual({ headers: { x: '1' } });
    expect(start).toEqual({ a: 1, headers: { x: '1' } });
    expect(configSummary({ path: '/srv/app.db', create: true, ca: null })).toBe('path: /srv/app.db · create: true');
  });
});

describe('log search', () => {
  it('cuts a line at the match ranges, counted in characters as Python does', () => {
    expect(highlightParts('Hello, world', [[0, 5]])).toEqual([
      { text: 'Hello', match: true },
      { text: ', world', match: false },
    ]);
    // the emoji is one character for the server and two UTF-16 units for JavaScript
    expect(highlightParts('🚀 deploy failed', [[9, 15]])).toEqual([
      { text: '🚀 deploy ', match: false },
      { text: 'failed', match: true },
    ]);
    // overlapping, unordered and out-of-range ranges are merged and clipped
    expect(highlightParts('abcdef', [[4, 99], [1, 3], [2, 4]])).toEqual([
      { text: 'a', match: false },
      { text: 'bcdef', match: true },
    ]);
    expect(highlightParts('', [])).toEqual([{ text: '', match: false }]);
  });

  it('links a hit to its run on its step and line', () => {
    const hit = { id: 42, run_id: 'r-1', step: 'build', highlight: [] } as unknown as LogHit;
    expect(hitLink(hit)).toBe('/runs/r-1?step=build&line=42');
    expect(hitLink({ ...hit, step: null })).toBe('/runs/r-1?line=42');
  });
});

describe('workers', () => {
  it('marks a heartbeat late after two missed beats and lost after 30 s', () => {
    expect(heartbeatHealth({ state: 'running', heartbeat_age: 3 })).toBe('ok');
    expect(heartbeatHealth({ state: 'draining', heartbeat_age: 21 })).toBe('late');
    expect(heartbeatHealth({ state: 'running', heartbeat_age: 31 })).toBe('lost');
    expect(heartbeatHealth({ state: 'lost', heartbeat_age: 5 })).toBe('lost');
    expect(heartbeatHealth({ state: 'stopped', heartbeat_age: 500 })).toBe('gone');
    expect([fmtAge(4.7), fmtAge(200), fmtAge(7500), fmtAge(90000)]).toEqual(['4 s', '3 m 20 s', '2 h 5 m', '1 d 1 h']);
  });
});

describe('roles', () => {
  it('reads the role hierarchy and where a binding applies', () => {
    const me: Me = { name: 'ann', roles: [{ role: 'editor', namespace: 'ops' }, { role: 'viewer', namespace: null }] };
    expect(hasRole(me, 'viewer')).toBe(true);
    expect(hasRole(me, 'editor')).toBe(false);
    expect(hasRole(me, 'editor', 'ops')).toBe(true);
    expect(hasRole(me, 'operator', 'ops')).toBe(true);
    expect(hasRole(me, 'editor', 'web')).toBe(false);
    expect(hasRole(me, 'editor', '*')).toBe(true);
    expect(hasRole(null, 'viewer')).toBe(false);
  });
});
