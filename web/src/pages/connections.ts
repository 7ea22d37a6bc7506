// Connections: the form of a connection type from its JSON Schema (the editor's
// schemaForm.ts), with credentials write-only — never read back, shown as "set", kept
// when their input is left empty, cleared only when asked — and the body sent to
// `PUT /api/v1/connections/{namespace}/{name}`.
import { fieldsFor, type FormField, type JsonSchema, validateForm } from '../editor/schemaForm';

export interface ConnectionType {
  name: string;
  description: string;
  schema: JsonSchema;
  secret_fields: string[];
}

export interface Connection {
  namespace: string;
  name: string;
  type: string;
  config: Record<string, unknown>;
  /** Each credential field of the type and whether it is set. */
  secrets: Record<string, boolean>;
  created_at: string;
  updated_at: string;
  created_by: string | null;
  updated_by: string | null;
}

export const CONNECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;
export const CONNECTION_NAMESPACE = /^([a-z0-9][a-z0-9_-]{0,199}|\*)$/;

/**
 * The form fields of a type. The server's list of credential fields decides which are
 * write-only (a schema need not mark them); a credential that is a PEM key is a text
 * area, since a password input drops line breaks.
 */
export function connectionFields(type: ConnectionType): FormField[] {
  const secret = new Set(type.secret_fields);
  return fieldsFor(type.schema).map((f) => {
    if (!secret.has(f.name)) return f;
    const pem = /\bPEM\b|private key/i.test(f.description ?? '');
    return { ...f, secret: true, kind: pem ? 'multiline' : 'text', label: `${f.label} (credential)` };
  });
}

/** `obj` with the value at `path` replaced (undefined removes it); `obj` is not changed. */
export function setPath(obj: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path;
  const out = { ...obj };
  if (!rest.length) {
    if (value === undefined) delete out[head];
    else out[head] = value;
    return out;
  }
  const inner = out[head];
  const next = setPath(inner && typeof inner === 'object' && !Array.isArray(inner) ? (inner as Record<string, unknown>) : {}, rest, value);
  if (Object.keys(next).length) out[head] = next;
  else delete out[head];
  return out;
}

/**
 * The body of a PUT: the values typed, without empty credentials (the stored ones are
 * kept) and with `null` for each credential the user asked to clear.
 */
export function connectionBody(
  type: string,
  values: Record<string, unknown>,
  secretFields: string[],
  cleared: string[] = [],
): { type: string; config: Record<string, unknown> } {
  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || (secretFields.includes(k) && (v === '' || v === null))) continue;
    config[k] = v;
  }
  for (const k of cleared) if (secretFields.includes(k)) config[k] = null;
  return { type, config };
}

/**
 * The form's problems before sending. A required credential that is stored already is
 * not missing: leaving it empty keeps it (unless it is being cleared).
 */
export function connectionProblems(
  type: ConnectionType,
  fields: FormField[],
  values: Record<string, unknown>,
  stored: Record<string, boolean> = {},
  cleared: string[] = [],
): Record<string, string> {
  const found = validateForm(fields, values, type.schema, type.schema.additionalProperties !== false);
  for (const f of fields) {
    if (f.secret && stored[f.name] && !cleared.includes(f.name) && found[f.name] === 'required') delete found[f.name];
  }
  return found;
}

/**
 * The server's 422 details (`{"loc": ["config", "port"], "message": …}`) by field path,
 * so each shows on its input; problems of the whole config or of other parts under `_`.
 */
export function serverProblems(details: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(details)) return out;
  for (const d of details) {
    if (!d || typeof d !== 'object') continue;
    const { loc, message } = d as { loc?: unknown; message?: unknown };
    if (!message) continue;
    const parts = Array.isArray(loc) ? loc.map(String) : [];
    const key = parts[0] === 'config' && parts.length > 1 ? parts.slice(1).join('.') : '_';
    out[key] = out[key] ? `${out[key]}; ${String(message)}` : String(message);
  }
  return out;
}

/** A connection's public settings in one line: `path: /srv/app.db · create: true`. */
export function configSummary(config: Record<string, unknown>): string {
  return Object.entries(config)
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' · ');
}
