import { act, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes } from 'react-router-dom';
import { ApiError, type DraftResult } from '../api';
import { MeContext } from '../me';
import type { Connection } from '../pages/connections';
import DraftDialog from './DraftDialog';
import { connectionLabel, draftErrorText, llmConnections, problemText, usageText } from './draft';
import EditorPage from './EditorPage';

function conn(namespace: string, name: string, type = 'llm', config: Record<string, unknown> = {}): Connection {
  return { namespace, name, type, config, secrets: {}, created_at: '', updated_at: '', created_by: null, updated_by: null };
}

const CONNECTIONS = [
  conn('default', 'openai', 'llm', { base_url: 'https://api.openai.com/v1', model: 'gpt-4o-mini' }),
  conn('default', 'github', 'http', { base_url: 'https://api.github.com' }),
  conn('*', 'local-llm', 'llm', { base_url: 'http://127.0.0.1:11434/v1' }),
  conn('*', 'openai', 'llm'),
  conn('ops', 'ops-llm', 'llm'),
];

const SOURCE = `name: nightly-backup
triggers:
  - schedule: {cron: "0 2 * * *"}
steps:
  - id: backup
    run: pg_dump app > /backups/app.sql
    retries: lots
`;

const DRAFT: DraftResult = {
  source: SOURCE,
  valid: false,
  errors: [
    { line: 7, column: 14, message: 'retries: expected an integer or a policy' },
    { line: null, column: null, message: 'notify: channel ops is not configured' },
  ],
  model: 'gpt-4o-mini',
  usage: { prompt_tokens: 1200, completion_tokens: 96, total_tokens: 1296, cost: 0.00024 },
};

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/** The API the dialog (and the editor) talks to; `draft` answers POST /drafts. Records each draft request body. */
function mockApi(draft: () => Response, connections: Connection[] = CONNECTIONS) {
  const bodies: unknown[] = [];
  globalThis.fetch = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
    const u = String(url);
    if (u.startsWith('/api/v1/connections')) return json({ items: connections, next_cursor: null });
    if (u === '/api/v1/drafts' && init?.method === 'POST') {
      bodies.push(JSON.parse(String(init.body)));
      return draft();
    }
    if (u.startsWith('/api/v1/actions')) return json({ items: [] });
    return json({ error: { code: 'not_found', message: `no fixture for ${u}` } }, 404);
  }) as typeof fetch;
  return bodies;
}

function renderDialog(props: Partial<Parameters<typeof DraftDialog>[0]> = {}) {
  const onUse = vi.fn();
  const onClose = vi.fn();
  render(
    <MemoryRouter>
      <DraftDialog namespace="default" replacesChanges={false} onUse={onUse} onClose={onClose} {...props} />
    </MemoryRouter>,
  );
  return { onUse, onClose };
}

describe('draft helpers', () => {
  it("lists the llm connections of the namespace, then global ones it does not shadow", () => {
    expect(llmConnections(CONNECTIONS, 'default').map((c) => `${c.namespace}/${c.name}`)).toEqual(['default/openai', '*/local-llm']);
    expect(llmConnections(CONNECTIONS, 'ops').map((c) => `${c.namespace}/${c.name}`)).toEqual(['ops/ops-llm', '*/local-llm', '*/openai']);
    expect(connectionLabel(CONNECTIONS[0])).toBe('openai — gpt-4o-mini');
    expect(connectionLabel(CONNECTIONS[2])).toBe('local-llm (global)');
  });

  it('writes problems as line:column: message', () => {
    expect(DRAFT.errors.map(problemText)).toEqual(['7:14: retries: expected an integer or a policy', 'notify: channel ops is not configured']);
    expect(problemText({ line: 3, column: null, message: 'x' })).toBe('3: x');
  });

  it('counts tokens and cost', () => {
    expect(usageText(DRAFT.usage)).toBe('1,296 tokens (1,200 prompt + 96 completion) · $0.00024');
    expect(usageText({ ...DRAFT.usage, cost: null })).toBe('1,296 tokens (1,200 prompt + 96 completion)');
  });

  it('says what a refused request means', () => {
    expect(draftErrorText(new ApiError(502, { code: 'provider_error', message: 'HTTP 500 from http://127.0.0.1:9/v1/chat/completions' }))).toBe(
      'The LLM provider failed: HTTP 500 from http://127.0.0.1:9/v1/chat/completions',
    );
    expect(draftErrorText(new ApiError(404, { code: 'not_found', message: 'no connection default/x' }))).toBe('no connection default/x — choose another LLM connection.');
    expect(draftErrorText(new ApiError(422, { code: 'invalid', message: 'prompt: too long (at most 4000 characters)' }))).toBe('prompt: too long (at most 4000 characters)');
  });
});

describe('the Draft with AI dialog', () => {
  it('generates a draft, shows it with its problems marked and its cost, and hands it over', async () => {
    const bodies = mockApi(() => json(DRAFT));
    const { onUse } = renderDialog();
    const dialog = screen.getByRole('dialog', { name: 'Draft a workflow with AI' });
    const prompt = within(dialog).getByLabelText('Describe the workflow');
    expect(prompt).toHaveFocus();
    const picker = await within(dialog).findByLabelText('LLM connection');
    // only llm connections, of this namespace or global
    expect(within(picker).getAllByRole('option').map((o) => o.textContent)).toEqual(['openai — gpt-4o-mini', 'local-llm (global)']);

    // an empty prompt is not sent
    await userEvent.click(within(dialog).getByRole('button', { name: 'Generate' }));
    expect(within(dialog).getByRole('alert')).toHaveTextContent('Describe the workflow first');
    expect(bodies).toEqual([]);

    await userEvent.type(prompt, 'every night back up the database and tell #ops if it fails');
    await userEvent.selectOptions(picker, 'local-llm');
    await userEvent.type(within(dialog).getByLabelText('Model (optional)'), 'llama3.1');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Generate' }));
    const yaml = await within(dialog).findByLabelText('Draft YAML');
    expect(bodies).toEqual([{ prompt: 'every night back up the database and tell #ops if it fails', connection: 'local-llm', namespace: 'default', model: 'llama3.1' }]);
    expect(yaml).toHaveTextContent('name: nightly-backup');
    expect(yaml.querySelector('[data-line="7"]')).toHaveClass('has-problem');
    expect(yaml.querySelector('[data-line="7"]')).toHaveAttribute('title', 'retries: expected an integer or a policy');
    expect(yaml.querySelector('[data-line="6"]')).not.toHaveClass('has-problem');
    const problems = within(dialog).getByRole('list', { name: 'Problems in the draft' });
    expect(within(problems).getAllByRole('listitem').map((li) => li.textContent)).toEqual(['7:14: retries: expected an integer or a policy', 'notify: channel ops is not configured']);
    expect(within(dialog).getByText(/✗ 2 problems/)).toBeInTheDocument();
    expect(within(dialog).getByTestId('draft-usage')).toHaveTextContent('gpt-4o-mini · 1,296 tokens (1,200 prompt + 96 completion) · $0.00024');

    await userEvent.click(within(dialog).getByRole('button', { name: 'Use this draft' }));
    expect(onUse).toHaveBeenCalledWith(SOURCE);
  });

  it('links to Connections when there is no llm connection', async () => {
    const bodies = mockApi(() => json(DRAFT), [conn('default', 'github', 'http')]);
    renderDialog();
    const note = await screen.findByTestId('no-llm-connection');
    expect(note).toHaveTextContent('There is no LLM connection in namespace default');
    expect(within(note).getByRole('link', { name: 'Connections' })).toHaveAttribute('href', '/admin/connections');
    expect(screen.getByRole('button', { name: 'Generate' })).toBeDisabled();
    expect(screen.queryByLabelText('LLM connection')).toBeNull();
    expect(bodies).toEqual([]);
  });

  it('says the provider failed on a 502', async () => {
    mockApi(() => json({ error: { code: 'provider_error', message: 'the provider answered HTTP 500 three times', details: null } }, 502));
    renderDialog();
    await screen.findByLabelText('LLM connection');
    await userEvent.type(screen.getByLabelText('Describe the workflow'), 'deploy on push');
    await userEvent.click(screen.getByRole('button', { name: 'Generate' }));
    expect(await screen.findByText('The LLM provider failed: the provider answered HTTP 500 three times')).toHaveAttribute('role', 'alert');
    expect(screen.queryByRole('button', { name: 'Use this draft' })).toBeNull();
  });

  it('closes on Escape and keeps Tab inside', async () => {
    mockApi(() => json(DRAFT));
    const { onClose } = renderDialog();
    await screen.findByLabelText('LLM connection');
    const close = screen.getByRole('button', { name: 'Close the draft dialog' });
    const cancel = screen.getByRole('button', { name: 'Cancel' });
    cancel.focus();
    await userEvent.tab();
    expect(close).toHaveFocus();
    await userEvent.tab({ shift: true });
    expect(cancel).toHaveFocus();
    await userEvent.keyboard('{Escape}');
    expect(onClose).toHaveBeenCalledTimes(1);
  });
});

describe('Draft with AI in the editor', () => {
  beforeAll(() => {
    // React Flow measures its box; jsdom has no layout
    globalThis.ResizeObserver ??= class {
      observe() {}
      unobserve() {}
      disconnect() {}
    } as unknown as typeof ResizeObserver;
    // CodeMirror measures text ranges; jsdom has no layout
    Range.prototype.getClientRects ??= () => [] as unknown as DOMRectList;
    Range.prototype.getBoundingClientRect ??= () => new DOMRect();
  });

  it('loads the draft into the YAML as an unsaved change, deploying nothing', async () => {
    const bodies = mockApi(() => json({ ...DRAFT, valid: true, errors: [] }));
    render(
      <MemoryRouter initialEntries={['/editor']}>
        <MeContext.Provider value={{ name: 'ed', roles: [{ role: 'editor', namespace: 'default' }] }}>
          <Routes>
            <Route path="/editor/:name?" element={<EditorPage />} />
          </Routes>
        </MeContext.Provider>
      </MemoryRouter>,
    );
    const open = screen.getByRole('button', { name: 'Draft with AI…' });
    await userEvent.click(open);
    const dialog = screen.getByRole('dialog', { name: 'Draft a workflow with AI' });
    await within(dialog).findByLabelText('LLM connection');
    await userEvent.type(within(dialog).getByLabelText('Describe the workflow'), 'every night back up the database');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Generate' }));
    expect(await within(dialog).findByText(/✓ Valid/)).toBeInTheDocument();
    await userEvent.click(within(dialog).getByRole('button', { name: 'Use this draft' }));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(open).toHaveFocus();
    expect(screen.getByRole('status')).toHaveTextContent('Loaded the AI draft as an unsaved change');
    expect(screen.getByText('unsaved changes')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('tab', { name: 'YAML' }));
    await waitFor(() => expect(screen.getByLabelText('Workflow YAML')).toHaveTextContent('name: nightly-backup'));
    expect(bodies).toHaveLength(1);
    const posts = vi.mocked(globalThis.fetch).mock.calls.filter(([, init]) => init?.method === 'POST').map(([u]) => String(u));
    expect(posts).toEqual(['/api/v1/drafts']);
    await act(async () => undefined);
  });

  it('is offered only to those who may edit', async () => {
    mockApi(() => json(DRAFT));
    render(
      <MemoryRouter initialEntries={['/editor']}>
        <MeContext.Provider value={{ name: 'v', roles: [{ role: 'viewer', namespace: null }] }}>
          <Routes>
            <Route path="/editor/:name?" element={<EditorPage />} />
          </Routes>
        </MeContext.Provider>
      </MemoryRouter>,
    );
    expect(screen.queryByRole('button', { name: 'Draft with AI…' })).toBeNull();
    await act(async () => new Promise((r) => setTimeout(r, 10))); // the palette's actions arrive
  });
});
