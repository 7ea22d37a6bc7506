import type { ActionInfo } from './actions';
import http from './fixtures/http-input.schema.json';
import type { JsonSchema } from './schemaForm';
import { completionsAt } from './yamlComplete';

const ACTIONS: ActionInfo[] = [
  { name: 'shell', version: '1', description: 'Run a command', source: 'builtin', input_schema: { type: 'object', required: ['command'], properties: { command: { type: 'string' }, shell: { type: 'string' } } }, output_schema: null },
  { name: 'http', version: '1', description: 'Call a URL', source: 'builtin', input_schema: http as JsonSchema, output_schema: null },
];

/** Completions where `|` is in `text`. */
function at(text: string) {
  const pos = text.indexOf('|');
  const r = completionsAt(text.replace('|', ''), pos, ACTIONS);
  return r && { from: r.from, labels: r.options.map((o) => o.label) };
}

describe('YAML completion', () => {
  it('offers the top-level keys of the format', () => {
    expect(at('name: x\nst|')).toEqual(expect.objectContaining({ from: 8, labels: expect.arrayContaining(['steps', 'triggers', 'on_failure']) }));
  });

  it('offers step keys in a step, at any depth', () => {
    expect(at('steps:\n  - id: a\n    ru|')!.labels).toContain('run');
    expect(at('steps:\n  - |')!.labels).toContain('uses');
    expect(at('steps:\n  - id: g\n    parallel:\n      - id: b\n        run: x\n      - id: c\n        ti|')!.labels).toContain('timeout');
  });

  it("offers the server's actions after uses:", () => {
    expect(at('steps:\n  - id: a\n    uses: ht|')).toEqual({ from: 27, labels: ['shell', 'http'] });
  });

  it("offers an action's inputs under with:, from its JSON Schema", () => {
    const text = 'steps:\n  - id: a\n    uses: http\n    with:\n      |';
    expect(at(text)!.labels).toEqual(expect.arrayContaining(['url', 'method', 'expect_status', 'auth']));
    const shell = 'steps:\n  - id: a\n    with:\n      |\n    uses: shell\n';
    expect(at(shell)!.labels).toEqual(['command', 'shell']);
  });

  it('offers enum values and fixed choices', () => {
    expect(at('steps:\n  - id: a\n    on_error: c|')!.labels).toEqual(['fail', 'continue', 'retry']);
    expect(at('steps:\n  - id: a\n    retries:\n      bac|')!.labels).toContain('backoff');
  });

  it('offers where a step runs: queue, runs_on and priority, in a step and under defaults:', () => {
    const step = completionsAt('steps:\n  - id: a\n    run: x\n    q', 33, ACTIONS)!;
    expect(step.options.find((o) => o.label === 'queue')).toEqual(expect.objectContaining({ apply: 'queue: ', detail: expect.stringContaining('worker queue') }));
    expect(step.options.map((o) => o.label)).toEqual(expect.arrayContaining(['runs_on', 'priority']));
    expect(at('defaults:\n  pri|')!.labels).toEqual(expect.arrayContaining(['priority', 'queue', 'runs_on', 'timeout', 'retries']));
  });

  it('stays quiet where it knows nothing', () => {
    expect(at('steps:\n  - id: a\n    run: ec|')).toBeNull();
    expect(at('labels:\n  sta|')).toBeNull();
  });
});
