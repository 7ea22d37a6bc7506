import { needsMore, visibleRange } from './windowing';

describe('visibleRange', () => {
  it('renders the rows in view plus the overscan, with spacers for the rest', () => {
    // 100,000 rows of 40 px, scrolled to row 1,000, a 400 px viewport
    const w = visibleRange(40_000, 400, 40, 100_000, 5);
    expect(w).toEqual({ start: 995, end: 1016, top: 995 * 40, bottom: (100_000 - 1016) * 40 });
    expect(w.end - w.start).toBeLessThan(30);
    expect(w.top + (w.end - w.start) * 40 + w.bottom).toBe(100_000 * 40);
  });

  it('clamps at both ends and handles empty lists', () => {
    expect(visibleRange(0, 400, 40, 3)).toEqual({ start: 0, end: 3, top: 0, bottom: 0 });
    expect(visibleRange(-50, 400, 40, 100, 2)).toMatchObject({ start: 0, top: 0 });
    expect(visibleRange(1e9, 400, 40, 100, 2)).toMatchObject({ end: 100, bottom: 0 });
    expect(visibleRange(0, 400, 40, 0)).toEqual({ start: 0, end: 0, top: 0, bottom: 0 });
  });

  it('asks for the next page near the end of what is loaded', () => {
    expect(needsMore(visibleRange(0, 400, 40, 100), 100, true)).toBe(false);
    expect(needsMore(visibleRange(3200, 400, 40, 100), 100, true)).toBe(true);
    expect(needsMore(visibleRange(3200, 400, 40, 100), 100, false)).toBe(false);
  });
});
