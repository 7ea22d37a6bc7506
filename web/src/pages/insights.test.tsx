import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes, useLocation } from 'react-router-dom';
import type { Anomaly, FailureClusters, Suggestion } from '../api';
import { anomalyDetail, anomalyText, relativeTime, sinceFor } from './insights';
import Insights, { currentText, suggestionYaml } from './Insights';
import RunPage from './RunPage';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

const WORKFLOWS = { items: [{ name: 'nightly-report' }, { name: 'deploy' }], next_cursor: null };

function clusters(): FailureClusters {
  return {
    method: 'embeddings',
    clusters: [
      {
        id: 'c1',
        label: 'psycopg.OperationalError: connection to server at "db" refused',
        count: 7,
        first_seen: ago(3 * 24 * 60),
        last_seen: ago(120),
        workflows: ['nightly-report', 'deploy'],
        steps: [
          { workflow: 'nightly-report', step: 'fetch', count: 5 },
          { workflow: 'deploy', step: 'migrate', count: 2 },
        ],
        examples: [
          { run_id: '0199aaaa-1111-7000-8000-000000000001', workflow: 'nightly-report', step: 'fetch', attempt: 2, error: 'connection to server at "db" refused', at: ago(120) },
        ],
      },
      { id: 'c2', label: 'disk full', count: 2, first_seen: ago(600), last_seen: ago(300), workflows: ['deploy'], steps: [], examples: [] },
    ],
  };
}

const ANOMALIES: Anomaly[] = [
  { run_id: '0199bbbb-2222-7000-8000-000000000002', workflow: 'deploy', step: null, duration: 41, median: 12, mad: 1.5, score: 13.04, direction: 'slow', at: ago(30) },
  { run_id: '0199cccc-3333-7000-8000-000000000003', workflow: 'deploy', step: 'build', duration: 2, median: 10, mad: 1, score: -5.4, direction: 'fast', at: ago(90) },
];

const SUGGESTIONS: Suggestion[] = [
  {
    workflow: 'deploy',
    step: 'health',
    kind: 'retries',
    current: null,
    suggested: { retries: { max: 3, backoff: 'exponential', initial: '2s' } },
    reason: 'health failed then passed on a retry in 6 of 40 runs.',
    evidence: { runs: 40, recovered: 6 },
  },
  { workflow: 'deploy', step: 'build', kind: 'timeout', current: '1h', suggested: { timeout: '4m' }, reason: 'build took at most 2m01s (p99) in 120 runs.', evidence: {} },
];

/** A fetch that answers each path from `routes` (the first whose key starts the path) and records the URLs. */
function mockFetch(routes: Record<string, () => Response>) {
  const urls: string[] = [];
  globalThis.fetch = vi.fn(async (url: RequestInfo | URL) => {
    const u = String(url);
    urls.push(u);
    const key = Object.keys(routes).find((k) => u.startsWith(k));
    return key ? routes[key]() : json({ error: { code: 'not_found', message: `no fixture for ${u}` } }, 404);
  }) as typeof fetch;
  return urls;
}

function Where() {
  const l = useLocation();
  return <div data-testid="where">{l.pathname + l.search}</div>;
}

function renderAt(path: string) {
  return render(
    <MemoryRouter initialEntries={[path]}>
      <Routes>
        <Route path="/insights" element={<Insights />} />
        <Route path="/insights/:tab" element={<Insights />} />
        <Route path="*" element={<p>elsewhere</p>} />
      </Routes>
      <Where />
    </MemoryRouter>,
  );
}

describe('insight helpers', () => {
  it('says times relative to now', () => {
    expect(relativeTime('2026-11-21T11:59:40Z', NOW)).toBe('just now');
    expect(relativeTime('2026-11-21T11:55:00Z', NOW)).toBe('5 min ago');
    expect(relativeTime('2026-11-21T09:00:00Z', NOW)).toBe('3 h ago');
    expect(relativeTime('2026-11-20T12:00:00Z', NOW)).toBe('1 day ago');
    expect(relativeTime('2026-11-18T12:00:00Z', NOW)).toBe('3 days ago');
    expect(relativeTime('not a time', NOW)).toBe('not a time');
  });

  it('turns a window into the time it starts, on a whole minute', () => {
    expect(sinceFor('24h', NOW + 17_000)).toBe('2026-11-20T12:00:00.000Z');
    expect(sinceFor('30d', NOW)).toBe('2026-10-22T12:00:00.000Z');
    expect(sinceFor('nonsense', NOW)).toBe(sinceFor('7d', NOW));
  });

  it('says how far outside its history a duration is', () => {
    expect(anomalyText({ duration: 41, median: 12, direction: 'slow' })).toBe('3.4× slower than usual (median 12.0 s)');
    expect(anomalyText({ duration: 2, median: 10, direction: 'fast' })).toBe('5× faster than usual (median 10.0 s)');
    expect(anomalyText({ duration: 600, median: 12, direction: 'slow' })).toBe('50× slower than usual (median 12.0 s)');
    expect(anomalyText({ duration: 5, median: 0, direction: 'slow' })).toBe('much slower than usual (median 0 ms)');
    expect(anomalyDetail(ANOMALIES[0])).toBe('took 41.0 s · median 12.0 s · MAD 1.5 s · robust z-score 13.0');
  });

  it('writes a suggestion as the YAML to put in the step', () => {
    expect(suggestionYaml(SUGGESTIONS[0])).toBe('retries:\n  max: 3\n  backoff: exponential\n  initial: 2s');
    expect(suggestionYaml(SUGGESTIONS[1])).toBe('timeout: 4m');
    expect(currentText(null)).toBe('none');
    expect(currentText({ max: 2, backoff: 'constant' })).toBe('{max: 2, backoff: constant}');
  });
});

describe('Insights page', () => {
  it('shows failure clusters with counts, times, workflows and examples linked to their runs', async () => {
    const urls = mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/failures': () => json(clusters()) });
    renderAt('/insights');
    const list = await screen.findByRole('list', { name: 'Failure clusters' });
    const items = within(list).getAllByRole('listitem');
    expect(items).toHaveLength(2);
    const first = items[0];
    expect(within(first).getByRole('heading')).toHaveTextContent('psycopg.OperationalError: connection to server at "db" refused');
    expect(first).toHaveTextContent('7×');
    expect(first).toHaveTextContent('first seen 3 days ago');
    expect(first).toHaveTextContent('last seen 2 h ago');
    expect(within(first).getByRole('link', { name: 'nightly-report' })).toHaveAttribute('href', '/workflows/nightly-report');
    expect(within(first).getByRole('link', { name: 'deploy' })).toHaveAttribute('href', '/workflows/deploy');
    expect(first).toHaveTextContent('nightly-report › fetch ×5');
    await userEvent.click(within(first).getByText('Examples (1 of 7)'));
    expect(within(first).getByRole('link', { name: 'fetch' })).toHaveAttribute('href', '/runs/0199aaaa-1111-7000-8000-000000000001?step=fetch');
    expect(within(first).getByRole('link', { name: /nightly-report run 0199aaaa/ })).toHaveAttribute('href', '/runs/0199aaaa-1111-7000-8000-000000000001');
    expect(screen.getByRole('status')).toHaveTextContent('9 failed step attempts in the last 7 days in 2 clusters, most frequent first.');
    expect(screen.getByRole('status')).toHaveTextContent('meaning of their error text');
    // the default window: the last 7 days
    const asked = new URL(urls.find((u) => u.startsWith('/api/v1/insights/failures'))!, 'http://x');
    expect(Date.now() - Date.parse(asked.searchParams.get('since')!)).toBeGreaterThanOrEqual(7 * 86_400_000);
    expect(Date.now() - Date.parse(asked.searchParams.get('since')!)).toBeLessThan(7 * 86_400_000 + 120_000);
  });

  it('filters by workflow and time window through the address', async () => {
    const urls = mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/failures': () => json(clusters()) });
    renderAt('/insights');
    await screen.findByRole('list', { name: 'Failure clusters' });
    await screen.findByRole('option', { name: 'deploy' });
    await userEvent.selectOptions(screen.getByLabelText('Workflow'), 'deploy');
    await userEvent.selectOptions(screen.getByLabelText('Time window'), 'last 24 hours');
    expect(screen.getByTestId('where')).toHaveTextContent('/insights?workflow=deploy&window=24h');
    await waitFor(() => expect(urls.filter((u) => u.startsWith('/api/v1/insights/failures?workflow=deploy&since=')).length).toBeGreaterThan(0));
    const last = new URL(urls.filter((u) => u.startsWith('/api/v1/insights/failures')).pop()!, 'http://x');
    expect(last.searchParams.get('workflow')).toBe('deploy');
    expect(Date.now() - Date.parse(last.searchParams.get('since')!)).toBeLessThan(86_400_000 + 120_000);
    // the other tabs keep the filters
    expect(screen.getByRole('link', { name: 'Anomalies' })).toHaveAttribute('href', '/insights/anomalies?workflow=deploy&window=24h');
  });

  it('says what would appear when nothing failed', async () => {
    mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/failures': () => json({ method: 'tokens', clusters: [] }) });
    renderAt('/insights?workflow=deploy');
    const empty = await screen.findByTestId('clusters-empty');
    expect(empty).toHaveTextContent('No failed step attempts of deploy in the last 7 days.');
    expect(empty).toHaveTextContent('their errors are grouped here by similarity');
    expect(screen.getByRole('status')).toHaveTextContent('offline sentence model is not installed');
  });

  it('shows the server’s error instead of a list', async () => {
    mockFetch({
      '/api/v1/workflows': () => json(WORKFLOWS),
      '/api/v1/insights/failures': () => json({ error: { code: 'invalid', message: 'since: not a time', details: [] } }, 422),
    });
    renderAt('/insights');
    expect(await screen.findByRole('alert')).toHaveTextContent('Cannot read the failure clusters: since: not a time');
  });

  it('lists anomalies with the run, the step or the whole run, and the direction', async () => {
    mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/anomalies': () => json({ anomalies: ANOMALIES }) });
    renderAt('/insights/anomalies');
    const table = await screen.findByRole('table', { name: 'Anomalies' });
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toHaveTextContent('whole run');
    expect(rows[0]).toHaveTextContent('41.0 s');
    expect(rows[0]).toHaveTextContent('3.4× slower than usual');
    expect(rows[0]).toHaveTextContent('13.0');
    expect(within(rows[0]).getByRole('link', { name: '0199bbbb…' })).toHaveAttribute('href', '/runs/0199bbbb-2222-7000-8000-000000000002');
    expect(within(rows[1]).getByText('fast')).toHaveClass('anomaly-fast');
    expect(within(rows[1]).getByRole('link', { name: '0199cccc…' })).toHaveAttribute('href', '/runs/0199cccc-3333-7000-8000-000000000003?step=build');
  });

  it('explains an empty list of anomalies', async () => {
    mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/anomalies': () => json({ anomalies: [] }) });
    renderAt('/insights/anomalies?window=30d');
    expect(await screen.findByTestId('anomalies-empty')).toHaveTextContent('No unusual durations in the last 30 days.');
    expect(screen.getByTestId('anomalies-empty')).toHaveTextContent('need a history of finished runs');
  });

  it('shows each suggestion as YAML with Copy and a link to the editor', async () => {
    mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/suggestions': () => json({ suggestions: SUGGESTIONS }) });
    const writeText = vi.fn(async () => undefined);
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    renderAt('/insights/suggestions');
    const list = await screen.findByRole('list', { name: 'Suggestions' });
    const [retries, timeout] = within(list).getAllByRole('listitem');
    expect(retries).toHaveTextContent('health failed then passed on a retry in 6 of 40 runs.');
    expect(within(retries).getByLabelText('Suggested retries for health')).toHaveTextContent('retries: max: 3 backoff: exponential initial: 2s');
    expect(within(timeout).getByText('1h')).toBeInTheDocument();
    expect(within(timeout).getByRole('link', { name: 'Open deploy in the editor' })).toHaveAttribute('href', '/editor/deploy');
    await userEvent.click(within(timeout).getByRole('button', { name: 'Copy the suggested timeout for build' }));
    expect(writeText).toHaveBeenCalledWith('timeout: 4m');
    expect(within(timeout).getByRole('status')).toHaveTextContent('Copied.');
    // no time window for suggestions
    expect(screen.queryByLabelText('Time window')).toBeNull();
  });

  it('explains an empty list of suggestions', async () => {
    mockFetch({ '/api/v1/workflows': () => json(WORKFLOWS), '/api/v1/insights/suggestions': () => json({ suggestions: [] }) });
    renderAt('/insights/suggestions');
    expect(await screen.findByTestId('suggestions-empty')).toHaveTextContent('a retry policy for a step that failed and then passed when retried');
  });
});

describe('the anomaly badge of a run', () => {
  const RUN = {
    id: 'r1',
    workflow: 'deploy',
    namespace: 'default',
    version: 1,
    status: 'succeeded',
    success: true,
    attempt: 1,
    trigger_type: 'manual',
    created_at: '2026-11-21T10:00:00Z',
    duration: 41,
    inputs: {},
    outputs: {},
    trigger: {},
    steps: [],
  };

  function renderRun(run: unknown) {
    mockFetch({
      '/api/v1/runs/r1/logs': () => new Response('event: end\ndata: {}\n\n', { status: 200, headers: { 'Content-Type': 'text/event-stream' } }),
      '/api/v1/runs/r1': () => json(run),
      '/api/v1/workflows/deploy/versions/1': () => json({ error: { code: 'not_found', message: 'gone' } }, 404),
    });
    render(
      <MemoryRouter initialEntries={['/runs/r1']}>
        <Routes>
          <Route path="/runs/:id" element={<RunPage />} />
        </Routes>
      </MemoryRouter>,
    );
  }

  it('says how much slower than usual the run was, with the numbers for a tooltip', async () => {
    renderRun({ ...RUN, anomaly: { score: 13.04, duration: 41, median: 12, direction: 'slow' } });
    const flag = await screen.findByTestId('anomaly-badge');
    expect(flag).toHaveTextContent('unusual duration 3.4× slower than usual (median 12.0 s)');
    const badge = within(flag).getByText('unusual duration');
    expect(badge).toHaveAttribute('title', 'took 41.0 s · median 12.0 s · robust z-score 13.0');
    expect(badge).toHaveAccessibleDescription('took 41.0 s · median 12.0 s · robust z-score 13.0');
    expect(within(flag).getByRole('link')).toHaveAttribute('href', '/insights/anomalies?workflow=deploy');
  });

  it('shows nothing for a usual run, or a server without the flag', async () => {
    renderRun({ ...RUN, anomaly: null });
    await screen.findByText(/version 1 · attempt 1/);
    expect(screen.queryByTestId('anomaly-badge')).toBeNull();
  });
});
