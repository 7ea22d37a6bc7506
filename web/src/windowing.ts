// Windowing for long lists: only the rows in (or near) the viewport are in the DOM.
// Rows have one fixed height, so the visible range is arithmetic, never measured.

export interface RowWindow {
  /** First rendered row (inclusive). */
  start: number;
  /** Last rendered row (exclusive). */
  end: number;
  /** Height of the empty space standing for the rows above `start`. */
  top: number;
  /** Height of the empty space standing for the rows from `end` on. */
  bottom: number;
}

/**
 * The rows to render for a scroll position: those in view plus `overscan` on each side,
 * so a fast scroll does not show blank space before React catches up.
 */
export function visibleRange(scrollTop: number, viewport: number, rowHeight: number, count: number, overscan = 8): RowWindow {
  if (count <= 0 || rowHeight <= 0) return { start: 0, end: 0, top: 0, bottom: 0 };
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const inView = Math.ceil(Math.max(0, viewport) / rowHeight) + 1;
  const start = Math.min(Math.max(0, first - overscan), count);
  const end = Math.min(count, first + inView + overscan);
  return { start, end, top: start * rowHeight, bottom: (count - end) * rowHeight };
}

/** Whether the next server page should be fetched: the window reaches near the loaded end. */
export function needsMore(win: RowWindow, loaded: number, hasMore: boolean, threshold = 20): boolean {
  return hasMore && win.end + threshold >= loaded;
}
