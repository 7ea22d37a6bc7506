import { render, screen, waitFor } from '@testing-library/react';
import { useCursorList, VirtualTable, type Column } from './VirtualTable';

interface Item {
  id: string;
  n: number;
}

const columns: Column<Item>[] = [
  { header: 'Id', cell: (r) => r.id },
  { header: 'N', cell: (r) => r.n },
];

function List() {
  const list = useCursorList<Item>((cursor) => `/api/v1/things?cursor=${cursor ?? ''}`, 'k');
  return <VirtualTable list={list} columns={columns} rowKey={(r) => r.id} label="Things" noun="things" rowHeight={40} />;
}

describe('VirtualTable', () => {
  it('renders only a window of a long list and fetches the next page near its end', async () => {
    const asked: string[] = [];
    globalThis.fetch = vi.fn(async (url: RequestInfo | URL) => {
      const u = new URL(String(url), 'http://x');
      asked.push(u.searchParams.get('cursor') ?? '');
      const page = Number(u.searchParams.get('cursor') || 0);
      const items = Array.from({ length: 500 }, (_, i) => ({ id: `r${page * 500 + i}`, n: page * 500 + i }));
      return new Response(JSON.stringify({ items, next_cursor: page < 3 ? String(page + 1) : null }), { headers: { 'Content-Type': 'application/json' } });
    }) as typeof fetch;
    render(<List />);
    await screen.findByText('r0');
    // jsdom has no layout: the viewport counts as 800 px, i.e. 20 rows and the overscan
    const rows = document.querySelectorAll('tr.vrow');
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.length).toBeLessThan(60);
    expect(screen.queryByText('r400')).toBeNull();
    expect(screen.getByText(/500 things loaded; scroll for more/)).toBeInTheDocument();
    const box = screen.getByRole('region', { name: 'Things' });
    box.scrollTop = 480 * 40;
    box.dispatchEvent(new Event('scroll'));
    await screen.findByText('r480');
    await waitFor(() => expect(asked).toEqual(['', '1']));
    expect(document.querySelectorAll('tr.vrow').length).toBeLessThan(60);
    const spacer = document.querySelector<HTMLElement>('tr.spacer')!;
    expect(parseInt(spacer.style.height, 10)).toBeGreaterThan(400 * 40);
  });
});
