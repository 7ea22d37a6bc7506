// A table that renders only the rows in view, fed page by page from a cursor-paged API.
// With 100,000 runs the DOM holds a few dozen rows; the next page is fetched as the
// window nears the end of what is loaded.
import { type ReactNode, type UIEvent, useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { api } from './api';
import { errorText, type Page } from './util';
import { needsMore, visibleRange } from './windowing';

export interface Column<T> {
  header: string;
  cell: (item: T) => ReactNode;
  /** CSS width of the column (the table has a fixed layout, so rows never shift). */
  width?: string;
}

export interface CursorList<T> {
  items: T[];
  hasMore: boolean;
  loading: boolean;
  error: string | null;
  loadMore: () => void;
  reload: () => void;
}

/**
 * Items of a cursor-paged list endpoint, first page at once, more on `loadMore`.
 * `url(cursor)` builds the request; a change of `key` (the filters) starts over. A list
 * that is not `enabled` (a search without a query yet) is empty and asks nothing.
 */
export function useCursorList<T>(url: (cursor?: string) => string, key: string, enabled = true): CursorList<T> {
  const [items, setItems] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  const seq = useRef(0);
  const busy = useRef(false);
  const urlRef = useRef(url);
  urlRef.current = url;

  const fetchPage = useCallback(async (cursor: string | undefined, mine: number) => {
    busy.current = true;
    setLoading(true);
    try {
      const page = await api<Page<T>>(urlRef.current(cursor));
      if (mine !== seq.current) return;
      setItems((old) => (cursor ? [...old, ...page.items] : page.items));
      setNext(page.next_cursor);
      setError(null);
    } catch (e) {
      if (mine === seq.current) setError(errorText(e));
    } finally {
      if (mine === seq.current) {
        busy.current = false;
        setLoading(false);
      }
    }
  }, []);

  useEffect(() => {
    const mine = ++seq.current;
    setNext(null);
    if (!enabled) {
      busy.current = false;
      setItems([]);
      setError(null);
      setLoading(false);
      return;
    }
    void fetchPage(undefined, mine);
  }, [key, generation, fetchPage, enabled]);

  const loadMore = useCallback(() => {
    if (busy.current || !next) return;
    void fetchPage(next, seq.current);
  }, [next, fetchPage]);

  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { items, hasMore: next !== null, loading, error, loadMore, reload };
}

export function VirtualTable<T>({
  list,
  columns,
  rowKey,
  label,
  empty = 'Nothing here.',
  rowHeight: guess = 41,
  height = '70vh',
  noun = 'rows',
  nounOne,
}: {
  list: CursorList<T>;
  columns: Column<T>[];
  rowKey: (item: T) => string;
  label: string;
  empty?: string;
  /** Expected height of one row in pixels; the real height is measured once rendered. */
  rowHeight?: number;
  /** The most the list may take on screen (CSS); shorter lists take their own height. */
  height?: string;
  noun?: string;
  /** The noun for a single item (`line` for `lines`); `noun` otherwise. */
  nounOne?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(800);
  const [rowHeight, setRowHeight] = useState(guess);
  const { items, hasMore, loading, loadMore } = list;
  const win = visibleRange(scrollTop, viewport, rowHeight, items.length);

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    // the box is as tall as its rows up to its max-height: render for the tallest it can be
    const measure = () => {
      const max = getComputedStyle(el).maxHeight;
      setViewport(Math.max(el.clientHeight, max.endsWith('px') ? parseFloat(max) : 0) || 800);
    };
    measure();
    if (typeof ResizeObserver === 'undefined') return;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // The real row height (fonts, zoom) replaces the guess once, so the spacers stay exact.
  useLayoutEffect(() => {
    const row = box.current?.querySelector<HTMLElement>('tr.vrow');
    const h = row?.getBoundingClientRect().height;
    if (h && Math.abs(h - rowHeight) > 0.5) setRowHeight(h);
  }, [items.length > 0, rowHeight]); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => {
    if (needsMore(win, items.length, hasMore) && !loading) loadMore();
  }, [win.end, items.length, hasMore, loading, loadMore]); // eslint-disable-line react-hooks/exhaustive-deps

  const onScroll = (e: UIEvent<HTMLDivElement>) => setScrollTop(e.currentTarget.scrollTop);
  const cols = columns.length;
  return (
    <>
      <div className="vscroll" ref={box} onScroll={onScroll} style={{ maxHeight: height }} tabIndex={0} role="region" aria-label={label} data-testid="vscroll">
        <table className="list virtual" aria-rowcount={hasMore ? -1 : items.length + 1}>
          <colgroup>
            {columns.map((c) => (
              <col key={c.header} style={c.width ? { width: c.width } : undefined} />
            ))}
          </colgroup>
          <thead>
            <tr aria-rowindex={1}>
              {columns.map((c) => (
                <th scope="col" key={c.header}>
                  {c.header}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {win.top > 0 && (
              <tr className="spacer" aria-hidden="true" style={{ height: win.top }}>
                <td colSpan={cols} />
              </tr>
            )}
            {items.slice(win.start, win.end).map((item, i) => (
              <tr key={rowKey(item)} className="vrow" aria-rowindex={win.start + i + 2} style={{ height: rowHeight }}>
                {columns.map((c) => (
                  <td key={c.header}>{c.cell(item)}</td>
                ))}
              </tr>
            ))}
            {win.bottom > 0 && (
              <tr className="spacer" aria-hidden="true" style={{ height: win.bottom }}>
                <td colSpan={cols} />
              </tr>
            )}
            {!items.length && !loading && (
              <tr>
                <td colSpan={cols} className="muted">
                  {empty}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <p className="muted list-status" aria-live="polite">
        {loading ? 'Loading…' : `${items.length.toLocaleString()} ${items.length === 1 && nounOne ? nounOne : noun}${hasMore ? ' loaded; scroll for more' : ''}`}
      </p>
    </>
  );
}
