import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import StartRunForm, { convertInputs } from './StartRunForm';
import { percentile, summarise } from './Dashboard';
import { parseSse } from '../api';
import type { RunSummary, WorkflowInput } from '../util';

const INPUTS: WorkflowInput[] = [
  { name: 'version', type: 'string', required: true },
  { name: 'count', type: 'integer', required: false, default: 2 },
  { name: 'dry_run', type: 'boolean', required: false, default: false },
  { name: 'environment', type: 'string', required: false, default: 'staging', enum: ['staging', 'production'] },
];

describe('StartRunForm', () => {
  it('labels every input and sends typed values', async () => {
    const calls: unknown[] = [];
    globalThis.fetch = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
      calls.push(JSON.parse(String(init?.body)));
      return new Response(JSON.stringify({ id: 'r1', status: 'queued' }), { status: 201, headers: { 'Content-Type': 'application/json' } });
    }) as typeof fetch;
    const started = vi.fn();
    render(
      <MemoryRouter>
        <StartRunForm workflow="deploy" inputs={INPUTS} onStarted={started} />
      </MemoryRouter>,
    );
    await userEvent.type(screen.getByLabelText(/version/), '1.2.3');
    await userEvent.clear(screen.getByLabelText(/count/));
    await userEvent.type(screen.getByLabelText(/count/), '5');
    await userEvent.click(screen.getByLabelText(/dry_run/));
    await userEvent.selectOptions(screen.getByLabelText(/environment/), 'production');
    await userEvent.click(screen.getByRole('button', { name: 'Start run' }));
    expect(calls).toEqual([{ inputs: { version: '1.2.3', count: 5, dry_run: true, environment: 'production' } }]);
    expect(started).toHaveBeenCalled();
  });

  it('reports bad values before sending', () => {
    expect(convertInputs(INPUTS, { version: '', count: 'x', dry_run: false, environment: '' }).problems).toEqual([
      'version is required',
      'count: expected an integer',
    ]);
  });
});

describe('dashboard numbers', () => {
  it('computes success rate and percentiles, failing first', () => {
    const now = Date.parse('2026-11-21T12:00:00Z');
    const mk = (workflow: string, status: string, duration: number): RunSummary => ({
      id: Math.random().toString(),
      workflow,
      namespace: 'default',
      version: 1,
      status,
      success: status === 'succeeded',
      attempt: 1,
      trigger_type: 'manual',
      created_at: '2026-11-21T10:00:00Z',
      duration,
    });
    const runs = [mk('a', 'succeeded', 1), mk('a', 'succeeded', 3), mk('b', 'failed', 2), mk('b', 'succeeded', 4)];
    const { days, stats } = summarise(runs, now);
    expect(stats.map((s) => [s.workflow, s.rate])).toEqual([
      ['b', 0.5],
      ['a', 1],
    ]);
    expect(days[days.length - 1]).toEqual({ day: '2026-11-21', succeeded: 3, failed: 1, other: 0 });
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBe(10);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
  });
});

describe('SSE parsing', () => {
  it('splits events and keeps the incomplete rest', () => {
    const { events, rest } = parseSse('event: status\ndata: {"a":1}\n\n: keep-alive\n\nid: 7\nevent: log\ndata: x\n\nevent: end\nda');
    expect(events).toEqual([
      { event: 'status', data: '{"a":1}', id: undefined },
      { event: 'log', data: 'x', id: '7' },
    ]);
    expect(rest).toBe('event: end\nda');
  });
});
