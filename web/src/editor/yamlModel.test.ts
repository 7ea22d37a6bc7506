import { describe, expect, it } from 'vitest';
import {
  addStep,
  buildGraph,
  connect,
  disconnect,
  graphFromText,
  parse,
  removeStep,
  renameStep,
  setStepField,
  stepForErrorPath,
  stepValues,
  TO_STRING,
} from './yamlModel';

const SOURCE = `# Deploy the API — header comment
name: deploy-api   # trailing comment on name
description: Ship it
namespace: ops
labels: {stage: production, service: api}
inputs:
  version: {type: string, required: true}  # the release
steps:
  # first, in parallel
  - id: checks
    parallel:
      - id: backup
        run: ./backup.sh   # nightly script
      - id: health
        run: curl -f http://api/health
  - id: deploy
    run: ./deploy.sh \${{ inputs.version }}
    timeout: 5m
    # retries kept on purpose
    retries: 2
  - id: notify
    uses: notify
    with: {channel: ops, message: done}
    on_error: continue
# trailing comment of the file
`;

function comments(text: string): string[] {
  return text
    .split('\n')
    .map((l) => (l.includes('#') ? l.slice(l.indexOf('#')).trim() : ''))
    .filter(Boolean);
}

function topKeys(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => /^[a-z_]+:/.test(l))
    .map((l) => l.split(':')[0]);
}

describe('the canvas model', () => {
  it('builds the DAG the engine runs', () => {
    const g = graphFromText(SOURCE).graph!;
    expect(g.name).toBe('deploy-api');
    expect(g.nodes.map((n) => n.id)).toEqual(['backup', 'health', 'deploy', 'notify']);
    const edges = g.edges.map((e) => `${e.source}->${e.target}`);
    expect(edges).toEqual(['backup->deploy', 'health->deploy', 'deploy->notify']);
  });

  it('keeps every comment and key order through a series of visual edits', () => {
    let text = SOURCE;
    text = addStep(text, 'smoke', { run: 'echo smoke' });
    text = connect(text, 'deploy', 'smoke');
    text = setStepField(text, 'deploy', 'timeout', '10m');
    text = setStepField(text, 'deploy', 'if', "inputs.version != ''");
    text = setStepField(text, 'notify', ['with', 'title'], 'Deployed');
    text = renameStep(text, 'smoke', 'smoke-test');
    text = connect(text, 'backup', 'notify');
    text = disconnect(text, 'backup', 'notify');

    for (const c of comments(SOURCE)) expect(comments(text)).toContain(c);
    expect(topKeys(text)).toEqual(topKeys(SOURCE));
    // the deploy step keeps its key order; new keys come last
    const deploy = stepValues(text, 'deploy')!;
    expect(Object.keys(deploy)).toEqual(['id', 'run', 'timeout', 'retries', 'if']);
    expect(deploy.timeout).toBe('10m');
    expect(stepValues(text, 'notify')!.with).toEqual({ channel: 'ops', message: 'done', title: 'Deployed' });
    expect(stepValues(text, 'smoke-test')!.needs).toEqual(['deploy']);
    expect(text).toContain('with: {channel: ops, message: done, title: Deployed}');
    // the header is unchanged, comments included
    expect(text.split('\n').slice(0, 2)).toEqual(SOURCE.split('\n').slice(0, 2).map((l) => l.replace(/\s+#/, ' #')));
  });

  it('a round trip without edits keeps the content, comments and order', () => {
    const { doc } = parse(SOURCE);
    const again = doc!.toString(TO_STRING);
    expect(comments(again)).toEqual(comments(SOURCE));
    expect(parse(again).doc!.toJSON()).toEqual(doc!.toJSON());
    expect(topKeys(again)).toEqual(topKeys(SOURCE));
  });

  it('connect adds to the default predecessor, disconnect writes needs explicitly', () => {
    let text = connect(SOURCE, 'backup', 'notify');
    expect(stepValues(text, 'notify')!.needs).toEqual(['deploy', 'backup']);
    text = disconnect(text, 'deploy', 'notify');
    expect(stepValues(text, 'notify')!.needs).toEqual(['backup']);
    const g = buildGraph(parse(text).doc!);
    expect(g.edges.filter((e) => e.target === 'notify').map((e) => e.source)).toEqual(['backup']);
  });

  it('new steps start unconnected, and removing a step cleans needs', () => {
    let text = addStep(SOURCE, 'a', { run: 'echo a' });
    text = addStep(text, 'b', { uses: 'sleep', with: { duration: '1s' } });
    expect(graphFromText(text).graph!.edges.filter((e) => e.target === 'b')).toEqual([]);
    text = connect(text, 'a', 'b');
    expect(stepValues(text, 'b')!.needs).toEqual(['a']);
    text = removeStep(text, 'a');
    expect(stepValues(text, 'b')!.needs).toEqual([]);
    expect(stepValues(text, 'a')).toBeNull();
    for (const c of comments(SOURCE)) expect(comments(text)).toContain(c);
  });

  it('builds a workflow from an empty one', () => {
    let text = 'name: two\nsteps: []\n';
    text = addStep(text, 'first', { run: 'echo one' });
    text = addStep(text, 'second', { run: 'echo two' });
    text = connect(text, 'first', 'second');
    expect(text).toBe('name: two\nsteps:\n  - id: first\n    run: echo one\n  - id: second\n    run: echo two\n    needs: [first]\n');
  });

  it('removes a field and finds the step of a server error', () => {
    const text = setStepField(SOURCE, 'deploy', 'retries', undefined);
    expect(stepValues(text, 'deploy')!.retries).toBeUndefined();
    expect(comments(text)).toContain('# trailing comment of the file');
    expect(stepForErrorPath(SOURCE, ['steps', 0, 'parallel', 1, 'run'])).toBe('health');
    expect(stepForErrorPath(SOURCE, ['steps', 1, 'timeout'])).toBe('deploy');
    expect(stepForErrorPath(SOURCE, ['name'])).toBeUndefined();
  });

  it('reports YAML syntax errors instead of editing', () => {
    const { errors } = graphFromText('name: [unclosed\n');
    expect(errors.length).toBeGreaterThan(0);
    expect(() => addStep('name: [unclosed\n', 'x', {})).toThrow();
  });
});
