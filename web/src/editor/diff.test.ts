import { lineDiff } from './diff';

it('diffs lines', () => {
  const d = lineDiff('a\nb\nc\n', 'a\nc\nd\n');
  expect(d).toEqual([
    { kind: ' ', text: 'a' },
    { kind: '-', text: 'b' },
    { kind: ' ', text: 'c' },
    { kind: '+', text: 'd' },
  ]);
  expect(lineDiff('', 'x\n')).toEqual([{ kind: '+', text: 'x' }]);
});
