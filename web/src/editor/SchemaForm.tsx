// A form generated from a JSON Schema (see schemaForm.ts). Text inputs commit on blur or
// Enter, selects at once; each commit is one edit of the YAML document by the caller.
import { type KeyboardEvent, type ReactNode, useEffect, useState } from 'react';
import { displayValue, type FormField, parseInput, placeholderFor } from './schemaForm';

export interface SchemaFormProps {
  fields: FormField[];
  values: Record<string, unknown> | undefined;
  /** Problems by field path (`a.b`), from `validateForm`. */
  errors: Record<string, string>;
  onSet: (path: string[], value: unknown) => void;
  /** Makes the input ids unique on the page. */
  idPrefix: string;
  /** A value shown for a field instead of the one in `values` (the shell `run:` shorthand). */
  override?: (field: FormField) => unknown;
  /** A hint for a field's empty input instead of its default (a stored credential: "set"). */
  placeholder?: (field: FormField) => string | undefined;
  /** Shown under a field's input (a "clear" box for a stored credential). */
  extra?: (field: FormField) => ReactNode;
}

export function SchemaForm({ fields, values, errors, onSet, idPrefix, override, placeholder, extra }: SchemaFormProps) {
  return (
    <>
      {fields.map((f) => {
        const v = override?.(f) ?? values?.[f.name];
        if (f.kind === 'object' && f.fields) {
          const sub = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
          // an optional object not written yet stays folded: its own required fields only count once it exists
          return (
            <details key={f.name} className="schema-group" open={f.required || sub !== undefined}>
              <summary>
                {f.label}
                {f.required ? ' (required)' : sub === undefined ? <span className="muted"> · not set</span> : ''}
              </summary>
              {f.description && <p className="help">{f.description}</p>}
              <SchemaForm fields={f.fields} values={sub} errors={errors} onSet={onSet} idPrefix={idPrefix} placeholder={placeholder} extra={extra} />
            </details>
          );
        }
        return (
          <Field key={f.name} field={f} value={v} error={errors[f.path.join('.')]} onSet={onSet} idPrefix={idPrefix} hint={placeholder?.(f)}>
            {extra?.(f)}
          </Field>
        );
      })}
    </>
  );
}

function Field({
  field,
  value,
  error,
  onSet,
  idPrefix,
  hint,
  children,
}: {
  field: FormField;
  value: unknown;
  error?: string;
  onSet: SchemaFormProps['onSet'];
  idPrefix: string;
  hint?: string;
  children?: ReactNode;
}) {
  const shown = displayValue(field, value);
  const [draft, setDraft] = useState(shown);
  const [typing, setTyping] = useState<string | null>(null);
  useEffect(() => {
    setDraft(shown);
    setTyping(null);
  }, [shown]);
  const id = `${idPrefix}-${field.path.join('-')}`;
  const problem = typing ?? error;
  const describedBy = [field.description ? `${id}-help` : '', problem ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;

  const commit = (raw: string) => {
    const parsed = parseInput(field, raw);
    if ('error' in parsed) {
      setTyping(parsed.error);
      return;
    }
    setTyping(null);
    if (raw !== shown) onSet(field.path, parsed.value);
  };
  const onKey = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && field.kind !== 'multiline' && field.kind !== 'yaml') {
      e.preventDefault();
      commit(draft);
    }
  };
  const common = {
    id,
    'aria-invalid': problem ? true : undefined,
    'aria-describedby': describedBy,
    'aria-required': field.required || undefined,
  };

  let input;
  if (field.kind === 'boolean' || field.kind === 'select') {
    const options = field.kind === 'boolean' ? ['true', 'false'] : (field.options ?? []).map(String);
    input = (
      <select
        {...common}
        value={shown}
        onChange={(e) => {
          setDraft(e.target.value);
          commit(e.target.value);
        }}
      >
        <option value="">{field.default !== undefined && field.default !== null ? `(default: ${String(field.default)})` : '(not set)'}</option>
        {/* a value from the YAML that is not an option stays visible (and is marked) */}
        {shown && !options.includes(shown) && <option value={shown}>{shown}</option>}
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  } else if (field.kind === 'multiline' || field.kind === 'yaml') {
    input = (
      <textarea
        {...common}
        className={field.kind === 'yaml' ? 'yaml-field' : undefined}
        rows={field.kind === 'yaml' ? 2 : 4}
        value={draft}
        placeholder={hint ?? placeholderFor(field) ?? (field.kind === 'yaml' ? yamlHint(field) : undefined)}
        onChange={(e) => setDraft(e.target.value)}
        onBlur={() => commit(draft)}
      />
    );
  } else {
    input = (
      <input
        {...common}
        type={field.secret ? 'password' : 'text'}
        inputMode={field.kind === 'integer' ? 'numeric' : field.kind === 'number' ? 'decimal' : undefined}
        autoComplete="off"
        value={draft}
        placeholder={hint ?? placeholderFor(field)}
        onChange={(e) => setDraft(e.target.value)}
        onBlur={() => commit(draft)}
        onKeyDown={onKey}
      />
    );
  }
  return (
    <div className={`field${problem ? ' has-error' : ''}`}>
      <label htmlFor={id}>
        {field.label}
        {field.required ? ' (required)' : ''}
        {field.kind === 'yaml' && <span className="muted"> · YAML</span>}
      </label>
      {input}
      {field.description && (
        <small id={`${id}-help`} className="help">
          {field.description}
        </small>
      )}
      {problem && (
        <small id={`${id}-error`} className="field-error">
          {problem}
        </small>
      )}
      {children}
    </div>
  );
}

function yamlHint(field: FormField): string {
  if (field.types.length === 1 && field.types[0] === 'array') return '[a, b]';
  if (field.types.length === 1 && field.types[0] === 'object') return '{key: value}';
  return '';
}
