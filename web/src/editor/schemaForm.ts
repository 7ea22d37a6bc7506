// An action's JSON Schema (as pydantic writes it) turned into form fields, with the
// checks a browser can make before the server does: required, type, enum, bounds.
// Pure functions: the form component (SchemaForm.tsx) only renders what these return.
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  examples?: unknown[];
  enum?: unknown[];
  const?: unknown;
  format?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  definitions?: Record<string, JsonSchema>;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  writeOnly?: boolean;
}

/**
 * How a field is edited:
 * text/multiline/number/integer/boolean/select — one input;
 * scalar — one input for a union of scalar types (`5m` or `300`);
 * object — a nested group of fields; yaml — a small YAML editor (lists, maps, anything).
 */
export type FieldKind = 'text' | 'multiline' | 'number' | 'integer' | 'boolean' | 'select' | 'scalar' | 'object' | 'yaml';

export interface FormField {
  name: string;
  /** Keys from the form's root (under `with:`) to this field. */
  path: string[];
  label: string;
  kind: FieldKind;
  required: boolean;
  description?: string;
  default?: unknown;
  /** For `select`: the allowed values. */
  options?: unknown[];
  /** The JSON types a value may have (`integer`, `string`, `array`, … ; empty = any). */
  types: string[];
  /** For `object`: its fields. */
  fields?: FormField[];
  /** A credential: shown as a password input, written as `${{ secrets.NAME }}` ideally. */
  secret?: boolean;
  schema: JsonSchema;
}

const MULTILINE = /^(command|script|body|message|query|sql|template|text|content|code)$/;
const SCALARS = new Set(['string', 'number', 'integer', 'boolean']);
const MAX_DEPTH = 4;

/** Follow `$ref` (into `$defs`/`definitions` of `root`) and merge a one-element `allOf`. */
export function resolve(schema: JsonSchema, root: JsonSchema): JsonSchema {
  let s = schema;
  for (let hops = 0; s.$ref && hops < 16; hops++) {
    const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(s.$ref);
    const target = m ? root[m[1] as '$defs' | 'definitions']?.[decodeURIComponent(m[2])] : undefined;
    const rest = omit(s, '$ref');
    s = target ? { ...target, ...rest } : rest;
  }
  if (s.allOf && s.allOf.length === 1) {
    s = { ...resolve(s.allOf[0], root), ...omit(s, 'allOf') };
  }
  return s;
}

function omit(s: JsonSchema, ...keys: (keyof JsonSchema)[]): JsonSchema {
  const out = { ...s };
  for (const k of keys) delete out[k];
  return out;
}

function typesOf(s: JsonSchema): string[] {
  if (Array.isArray(s.type)) return s.type;
  if (s.type) return [s.type];
  if (s.enum) return [...new Set(s.enum.map(jsonType))];
  if (s.const !== undefined) return [jsonType(s.const)];
  return [];
}

/** A union (`anyOf`/`oneOf`/type list) without its `null` branch, as one schema when it can be. */
function simplify(schema: JsonSchema, root: JsonSchema): { schema: JsonSchema; branches: JsonSchema[] } {
  const s = resolve(schema, root);
  const union = s.anyOf ?? s.oneOf;
  if (union) {
    const branches = union.map((b) => resolve(b, root)).filter((b) => !(b.type === 'null' || (Array.isArray(b.type) && b.type.every((t) => t === 'null'))));
    const outer = omit(s, 'anyOf', 'oneOf');
    if (branches.length === 1) return simplify({ ...branches[0], ...outer }, root);
    // Literal choices written as a union of consts: one select.
    if (branches.length > 1 && branches.every((b) => b.const !== undefined || (b.enum && !b.type))) {
      return { schema: { ...outer, enum: branches.flatMap((b) => (b.const !== undefined ? [b.const] : (b.enum ?? []))) }, branches: [] };
    }
    return { schema: outer, branches };
  }
  if (Array.isArray(s.type)) {
    const types = s.type.filter((t) => t !== 'null');
    if (types.length === 1) return { schema: { ...s, type: types[0] }, branches: [] };
    return { schema: s, branches: types.map((t) => ({ type: t })) };
  }
  return { schema: s, branches: [] };
}

function humanize(name: string): string {
  const words = name.replace(/[_-]+/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The fields of an object schema, in its property order. */
export function fieldsFor(schema: JsonSchema, root: JsonSchema = schema, path: string[] = [], depth = 0): FormField[] {
  const s = resolve(schema, root);
  const required = new Set(s.required ?? []);
  return Object.entries(s.properties ?? {}).map(([name, prop]) => fieldFor(name, prop, root, [...path, name], required.has(name), depth));
}

function fieldFor(name: string, prop: JsonSchema, root: JsonSchema, path: string[], required: boolean, depth: number): FormField {
  const { schema: s, branches } = simplify(prop, root);
  const base = {
    name,
    path,
    // the property's own title (a referenced model's title names the model, not the field)
    label: prop.title ?? humanize(name),
    required,
    description: s.description,
    default: s.default,
    schema: s,
  };
  if (branches.length > 1) {
    const types = [...new Set(branches.flatMap(typesOf))];
    const scalar = types.length > 0 && types.every((t) => SCALARS.has(t)) && branches.every((b) => !b.enum);
    const any = branches.some((b) => typesOf(b).length === 0);
    return { ...base, kind: scalar ? 'scalar' : 'yaml', types: any ? [] : types, schema: { ...s, anyOf: branches } };
  }
  if (s.enum) return { ...base, kind: 'select', options: s.enum, types: typesOf(s) };
  const types = typesOf(s);
  const type = types[0];
  if (type === 'boolean') return { ...base, kind: 'boolean', types };
  if (type === 'integer' || type === 'number') return { ...base, kind: type, types };
  if (type === 'string') {
    const secret = s.format === 'password' || s.writeOnly === true;
    const multiline = !secret && (MULTILINE.test(name) || s.format === 'textarea' || (s.maxLength ?? 0) > 500);
    return { ...base, kind: multiline ? 'multiline' : 'text', types, secret };
  }
  if (type === 'object' && s.properties && Object.keys(s.properties).length && depth < MAX_DEPTH) {
    return { ...base, kind: 'object', types, fields: fieldsFor(s, root, path, depth + 1) };
  }
  return { ...base, kind: 'yaml', types };
}

// -- values ------------------------------------------------------------------------------

export function isExpression(v: unknown): boolean {
  return typeof v === 'string' && v.includes('${{');
}

export function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v; // string, boolean, object
}

function matchesType(v: unknown, type: string): boolean {
  const t = jsonType(v);
  return t === type || (type === 'number' && t === 'integer');
}

const TYPE_WORDS: Record<string, string> = {
  string: 'text',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

function expected(types: string[]): string {
  return 'expected ' + types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
}

function empty(v: unknown): boolean {
  return v === undefined || v === null || v === '';
}

/** What is wrong with `value` for `schema` (one message), or null. Expressions pass: the server checks them at run time. */
export function checkSchema(value: unknown, schema: JsonSchema, root: JsonSchema = schema): string | null {
  const { schema: s, branches } = simplify(schema, root);
  if (isExpression(value)) return null;
  if (branches.length > 1) {
    const problems = branches.map((b) => checkSchema(value, b, root));
    if (problems.some((p) => p === null)) return null;
    return expected([...new Set(branches.flatMap(typesOf))]);
  }
  if (s.enum) {
    return s.enum.some((o) => o === value) ? null : `one of: ${s.enum.map((o) => String(o)).join(', ')}`;
  }
  const types = typesOf(s);
  if (types.length && !types.some((t) => matchesType(value, t))) return expected(types);
  if (typeof value === 'number') {
    if (s.minimum !== undefined && value < s.minimum) return `at least ${s.minimum}`;
    if (s.maximum !== undefined && value > s.maximum) return `at most ${s.maximum}`;
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) return `more than ${s.exclusiveMinimum}`;
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) return `less than ${s.exclusiveMaximum}`;
  }
  if (typeof value === 'string') {
    if (s.minLength !== undefined && value.length < s.minLength) return `at least ${s.minLength} characters`;
    if (s.maxLength !== undefined && value.length > s.maxLength) return `at most ${s.maxLength} characters`;
    if (s.pattern) {
      try {
        if (!new RegExp(s.pattern, 'u').test(value)) return `does not match ${s.pattern}`;
      } catch {
        /* a pattern JavaScript cannot read: the server checks it */
      }
    }
  }
  if (Array.isArray(value) && s.items) {
    for (let i = 0; i < value.length; i++) {
      const p = checkSchema(value[i], s.items, root);
      if (p) return `item ${i + 1}: ${p}`;
    }
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const key of s.required ?? []) if (empty(obj[key])) return `${key} is required`;
    for (const [key, v] of Object.entries(obj)) {
      const prop = s.properties?.[key];
      if (prop) {
        const p = checkSchema(v, prop, root);
        if (p) return `${key}: ${p}`;
      } else if (s.additionalProperties === false) return `unknown key ${key}`;
      else if (typeof s.additionalProperties === 'object') {
        const p = checkSchema(v, s.additionalProperties, root);
        if (p) return `${key}: ${p}`;
      }
    }
  }
  return null;
}

/** Every problem of the form's values, by field path (`a.b`); `_` for keys the schema does not know. */
export function validateForm(fields: FormField[], values: Record<string, unknown> | undefined, root: JsonSchema, extraKeysAllowed = false): Record<string, string> {
  const out: Record<string, string> = {};
  const vals = values ?? {};
  for (const f of fields) {
    const v = vals[f.name];
    const key = f.path.join('.');
    if (empty(v)) {
      if (f.required) out[key] = 'required';
      continue;
    }
    if (f.kind === 'object' && f.fields && v && typeof v === 'object' && !Array.isArray(v)) {
      Object.assign(out, validateForm(f.fields, v as Record<string, unknown>, root, f.schema.additionalProperties !== false));
      continue;
    }
    const p = checkSchema(v, f.schema, root);
    if (p) out[key] = p;
  }
  if (!extraKeysAllowed) {
    const known = new Set(fields.map((f) => f.name));
    const unknown = Object.keys(vals).filter((k) => !known.has(k));
    if (unknown.length && fields.length) out._ = `unknown ${unknown.length > 1 ? 'keys' : 'key'}: ${unknown.join(', ')}`;
  }
  return out;
}

/** The problems of a step's `with:` against its action's input schema. */
export function validateWith(schema: JsonSchema, values: Record<string, unknown> | undefined): Record<string, string> {
  const s = resolve(schema, schema);
  return validateForm(fieldsFor(s, schema), values, schema, s.additionalProperties !== false && !!s.additionalProperties);
}

/** The text shown in a field's input for a value from the YAML. */
export function displayValue(field: FormField, value: unknown): string {
  if (value === undefined || value === null) return '';
  if (field.kind === 'yaml' || (typeof value === 'object' && field.kind !== 'object')) {
    return stringifyYaml(value, { collectionStyle: 'flow', flowCollectionPadding: false, lineWidth: 0 }).trimEnd();
  }
  return String(value);
}

export type Parsed = { value: unknown } | { error: string };

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/**
 * The value to write for what was typed: '' removes the key; numbers become numbers;
 * a union of `string | number` (`timeout: 5m` or `300`) keeps the type it reads as.
 * An error leaves the YAML untouched and shows on the field.
 */
export function parseInput(field: FormField, raw: string): Parsed {
  const text = field.kind === 'multiline' ? raw : raw.trim();
  if (text === '') return { value: undefined };
  if (isExpression(text)) return { value: text };
  switch (field.kind) {
    case 'text':
    case 'multiline':
      return { value: raw };
    case 'integer':
    case 'number': {
      if (!NUMBER.test(text)) return { error: expected([field.kind]) };
      const n = Number(text);
      if (field.kind === 'integer' && !Number.isInteger(n)) return { error: expected(['integer']) };
      return { value: n };
    }
    case 'boolean':
      return text === 'true' ? { value: true } : text === 'false' ? { value: false } : { error: expected(['boolean']) };
    case 'select': {
      const hit = (field.options ?? []).find((o) => String(o) === text);
      return hit === undefined ? { error: `one of: ${(field.options ?? []).join(', ')}` } : { value: hit };
    }
    case 'scalar': {
      const t = field.types;
      if ((t.includes('integer') || t.includes('number')) && NUMBER.test(text)) {
        const n = Number(text);
        if (t.includes('number') || Number.isInteger(n)) return { value: n };
      }
      if (t.includes('boolean') && (text === 'true' || text === 'false')) return { value: text === 'true' };
      return t.includes('string') ? { value: text } : { error: expected(t) };
    }
    default: {
      try {
        const v = parseYaml(raw);
        return v === null ? { value: undefined } : { value: v };
      } catch (e) {
        return { error: `not valid YAML: ${(e as Error).message.split('\n')[0]}` };
      }
    }
  }
}

/** A hint for an empty input: the default, if the schema has one. */
export function placeholderFor(field: FormField): string | undefined {
  if (field.default === undefined || field.default === null) return undefined;
  return `default: ${typeof field.default === 'object' ? JSON.stringify(field.default) : String(field.default)}`;
}
