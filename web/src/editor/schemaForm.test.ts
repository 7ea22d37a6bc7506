import http from './fixtures/http-input.schema.json';
import { checkSchema, displayValue, fieldsFor, type JsonSchema, parseInput, validateWith } from './schemaForm';

const HTTP = http as JsonSchema;

describe('form fields from an action schema', () => {
  const fields = fieldsFor(HTTP, HTTP, ['with']);
  const byName = Object.fromEntries(fields.map((f) => [f.name, f]));

  it('maps each JSON Schema shape to an input', () => {
    expect(byName.url).toMatchObject({ kind: 'text', required: false, path: ['with', 'url'], label: 'Url' });
    expect(byName.url.description).toMatch(/^The URL/);
    expect(byName.method).toMatchObject({ kind: 'text', required: false, default: 'GET' });
    expect(byName.follow_redirects).toMatchObject({ kind: 'boolean', default: true });
    expect(byName.body).toMatchObject({ kind: 'multiline', required: false });
    // string | number: one input that keeps the type it reads as
    expect(byName.timeout).toMatchObject({ kind: 'scalar', types: ['string', 'number'] });
    // integer | list of integers: a YAML sub-editor
    expect(byName.expect_status).toMatchObject({ kind: 'yaml', types: ['integer', 'array'] });
    expect(byName.headers.kind).toBe('yaml');
    expect(byName.json).toMatchObject({ kind: 'yaml', types: [] });
  });

  it('nests objects reached through $ref and optional unions', () => {
    const auth = byName.auth;
    expect(auth.kind).toBe('object');
    const basic = auth.fields!.find((f) => f.name === 'basic')!;
    expect(basic.kind).toBe('object');
    expect(basic.label).toBe('Basic');
    expect(basic.fields!.map((f) => [f.name, f.required, f.path.join('.')])).toEqual([
      ['username', true, 'with.auth.basic.username'],
      ['password', true, 'with.auth.basic.password'],
    ]);
    const oauth = auth.fields!.find((f) => f.name === 'oauth2')!;
    expect(oauth.fields!.find((f) => f.name === 'client_auth')).toMatchObject({ kind: 'select', options: ['basic', 'post'], default: 'basic' });
  });
});

describe('validation in the browser', () => {
  it('reports required, types, enums and unknown keys; expressions pass', () => {
    const shell: JsonSchema = { type: 'object', additionalProperties: false, properties: { command: { type: 'string' }, shell: { anyOf: [{ type: 'string' }, { type: 'null' }] } }, required: ['command'] };
    expect(validateWith(shell, {})).toEqual({ command: 'required' });
    expect(validateWith(shell, { command: '' })).toEqual({ command: 'required' });
    expect(validateWith(shell, { command: 42 })).toEqual({ command: 'expected text' });
    expect(validateWith(shell, { command: 'ls', shell: null })).toEqual({});
    expect(validateWith(HTTP, { url: 'https://x', follow_redirects: 'yes', expect_status: 'ok' })).toEqual({
      follow_redirects: 'expected true or false',
      expect_status: 'expected a whole number or a list',
    });
    expect(validateWith(HTTP, { url: 'https://x', expect_status: [200, 'x'] })).toEqual({ expect_status: 'expected a whole number or a list' });
    expect(validateWith(HTTP, { url: 'https://x', auth: { oauth2: { token_url: 't', client_id: 'c', client_secret: 's', client_auth: 'cookie' } } })).toEqual({
      'auth.oauth2.client_auth': 'one of: basic, post',
    });
    expect(validateWith(HTTP, { url: 'https://x', auth: { basic: { username: 'u' } } })).toEqual({ 'auth.basic.password': 'required' });
    expect(validateWith(HTTP, { url: 'https://x', colour: 'red' })).toEqual({ _: 'unknown key: colour' });
    expect(validateWith(HTTP, { url: '${{ inputs.url }}', follow_redirects: '${{ inputs.follow }}', timeout: 30 })).toEqual({});
  });

  it('checks bounds and patterns', () => {
    const duration: JsonSchema = { anyOf: [{ type: 'number', minimum: 0 }, { type: 'string', pattern: '^\\s*(\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)?\\s*)+$' }] };
    expect(checkSchema('1h30m', duration)).toBeNull();
    expect(checkSchema(-1, duration)).toBe('expected a number or text');
    expect(checkSchema('soon', duration)).toBe('expected a number or text');
    expect(checkSchema(5, { type: 'integer', maximum: 3 })).toBe('at most 3');
  });
});

describe('reading what was typed', () => {
  const fields = Object.fromEntries(fieldsFor(HTTP).map((f) => [f.name, f]));
  it('types values by the field and refuses what does not fit', () => {
    expect(parseInput(fields.timeout, '30')).toEqual({ value: 30 });
    expect(parseInput(fields.timeout, '5m')).toEqual({ value: '5m' });
    expect(parseInput(fields.expect_status, '[200, 201]')).toEqual({ value: [200, 201] });
    expect(parseInput(fields.expect_status, '[200')).toMatchObject({ error: expect.stringMatching(/^not valid YAML/) });
    expect(parseInput(fields.follow_redirects, 'false')).toEqual({ value: false });
    expect(parseInput(fields.url, '  ')).toEqual({ value: undefined });
    expect(parseInput(fields.url, '${{ inputs.url }}')).toEqual({ value: '${{ inputs.url }}' });
    expect(parseInput({ ...fields.url, kind: 'integer' }, '1.5')).toEqual({ error: 'expected a whole number' });
    expect(displayValue(fields.expect_status, [200, 201])).toBe('[200, 201]');
    expect(displayValue(fields.headers, { Accept: 'text/plain' })).toBe('{Accept: text/plain}');
  });
});
