import { groupProblem, groupSteps, setGroupKind, ungroupStep } from './groups';
import { layoutGraph } from './layout';
import { buildGraph, graphFromText, parse } from './yamlModel';

const SOURCE = `# release: header comment
name: release
steps:
  # build first
  - id: build
    run: make   # the build
  # two checks that could run together
  - id: lint
    run: make lint
  - id: test
    run: make test  # slow
  - id: ship
    run: make ship
`;

const comments = (t: string) => t.split('\n').filter((l) => l.includes('#')).map((l) => l.slice(l.indexOf('#')).trim());
const edges = (t: string) =>
  graphFromText(t)
    .graph!.edges.map((e) => `${e.source}->${e.target}`)
    .sort();

describe('grouping steps on the YAML document', () => {
  it('groups two steps into parallel, keeping every comment and the order around them', () => {
    const text = groupSteps(SOURCE, ['test', 'lint'], 'parallel', 'checks');
    expect(text).toBe(`# release: header comment
name: release
steps:
  # build first
  - id: build
    run: make # the build
  # two checks that could run together
  - id: checks
    parallel:
      - id: lint
        run: make lint
      - id: test
        run: make test # slow
  - id: ship
    run: make ship
`);
    expect(comments(text)).toEqual(comments(SOURCE));
    expect(edges(text)).toEqual(['build->lint', 'build->test', 'lint->ship', 'test->ship']);
  });

  it('groups into a sequence and switches the kind', () => {
    const seq = groupSteps(SOURCE, ['lint', 'test'], 'sequence', 'checks');
    expect(edges(seq)).toEqual(['build->lint', 'lint->test', 'test->ship']);
    const par = setGroupKind(seq, 'checks', 'parallel');
    expect(par).toContain('  - id: checks\n    parallel:\n');
    expect(edges(par)).toEqual(['build->lint', 'build->test', 'lint->ship', 'test->ship']);
  });

  it('ungroups a parallel group without changing what each step waits for', () => {
    const grouped = groupSteps(SOURCE, ['lint', 'test'], 'parallel', 'checks');
    const flat = ungroupStep(grouped, 'checks');
    expect(edges(flat)).toEqual(edges(grouped));
    expect(flat).toContain('  - id: test\n    run: make test # slow\n    needs: [build]\n');
    expect(flat).toContain('  - id: ship\n    run: make ship\n    needs: [lint, test]\n');
    expect(comments(flat)).toEqual(comments(SOURCE));
  });

  it('rewrites needs that name an ungrouped group, and keeps the group needs', () => {
    const text = `name: n
steps:
  - id: a
    run: a
  - id: g
    needs: []
    sequence:
      - id: b
        run: b
      - id: c
        run: c
  - id: d
    needs: [g]
    run: d
`;
    const before = edges(text);
    const flat = ungroupStep(text, 'g');
    expect(edges(flat)).toEqual(before);
    expect(flat).toContain('  - id: b\n    run: b\n    needs: []\n');
    expect(flat).toContain('  - id: d\n    needs: [c]\n');
  });

  it('ungroups a sequence nested in a parallel group', () => {
    const text = `name: n
steps:
  - id: start
    run: s
  - id: p
    parallel:
      - id: solo
        run: x
      - id: s
        sequence:
          - id: one
            run: "1"
          - id: two
            run: "2"
`;
    const flat = ungroupStep(text, 's');
    expect(edges(flat)).toEqual(edges(text));
    expect(flat).toContain('          - id: two\n'.replace('          ', '      ') + '        run: "2"\n        needs: [one]\n');
  });

  it('refuses what it cannot do, with a reason', () => {
    expect(groupProblem(SOURCE, ['lint'])).toMatch(/at least two/);
    const nested = groupSteps(SOURCE, ['lint', 'test'], 'parallel', 'checks');
    expect(groupProblem(nested, ['lint', 'ship'])).toMatch(/same list/);
    expect(groupProblem(nested, ['checks', 'ship'])).toBeNull();
    expect(() => groupSteps(SOURCE, ['lint', 'test'], 'parallel', 'build')).toThrow(/a step build exists/);
    expect(() => ungroupStep(SOURCE, 'lint')).toThrow(/not a group/);
    const withIf = nested.replace('  - id: checks\n', '  - id: checks\n    if: inputs.check\n');
    expect(() => ungroupStep(withIf, 'checks')).toThrow(/has if/);
  });
});

describe('layout with groups', () => {
  it('draws a box around each group that holds its steps and overlaps nothing else', () => {
    const text = groupSteps(SOURCE, ['lint', 'test'], 'parallel', 'checks');
    const { doc } = parse(text);
    const graph = buildGraph(doc!);
    const boxes = layoutGraph(graph);
    const g = boxes.checks;
    const inside = (id: string) => boxes[id].x >= g.x && boxes[id].y >= g.y && boxes[id].x + boxes[id].width <= g.x + g.width && boxes[id].y + boxes[id].height <= g.y + g.height;
    expect(inside('lint') && inside('test')).toBe(true);
    const apart = (id: string) => boxes[id].x + boxes[id].width <= g.x || boxes[id].x >= g.x + g.width;
    expect(apart('build') && apart('ship')).toBe(true);
    // left to right: build, the group, ship
    expect(boxes.build.x).toBeLessThan(g.x);
    expect(boxes.ship.x).toBeGreaterThan(g.x + g.width - 1);
  });
});

describe('adding a step into a group', () => {
  it('appends it to the group, which gives it its order', async () => {
    const { addStep } = await import('./yamlModel');
    const grouped = groupSteps(SOURCE, ['lint', 'test'], 'parallel', 'checks');
    const text = addStep(grouped, 'audit', { run: 'make audit' }, 'checks');
    expect(text).toContain('      - id: test\n        run: make test # slow\n      - id: audit\n        run: make audit\n  - id: ship\n');
    expect(edges(text)).toContain('build->audit');
    expect(edges(text)).toContain('audit->ship');
    expect(() => addStep(grouped, 'x', { run: 'x' }, 'build')).toThrow(/not a group/);
  });
});
