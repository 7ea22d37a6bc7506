import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { MeContext } from '../me';
import Connections from './Connections';

const TYPES = {
  items: [
    {
      name: 'http',
      description: 'An HTTP API: base URL, default headers and credentials.',
      secret_fields: ['bearer_token'],
      schema: {
        type: 'object',
        additionalProperties: false,
        required: ['base_url'],
        properties: {
          base_url: { type: 'string', title: 'Base Url' },
          bearer_token: { anyOf: [{ type: 'string', format: 'password', writeOnly: true }, { type: 'null' }], title: 'Bearer Token', default: null },
        },
      },
    },
  ],
  unavailable: {},
};

const STORED = {
  namespace: 'default',
  name: 'github',
  type: 'http',
  config: { base_url: 'https://api.github.com' },
  secrets: { bearer_token: true },
  created_at: '2026-11-21T10:00:00Z',
  updated_at: '2026-11-21T10:00:00Z',
  created_by: 'admin',
  updated_by: 'admin',
};

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

describe('Connections', () => {
  it('edits a connection without ever sending back a credential left empty', async () => {
    const puts: unknown[] = [];
    globalThis.fetch = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
      const u = String(url);
      if (u.startsWith('/api/v1/connection-types')) return json(TYPES);
      if (init?.method === 'PUT') {
        puts.push(JSON.parse(String(init.body)));
        return json(STORED);
      }
      if (u.endsWith('/test')) return json({ ok: true, message: 'HTTP 200 from https://api.github.com' });
      return json({ items: [STORED], next_cursor: null });
    }) as typeof fetch;
    render(
      <MemoryRouter>
        <MeContext.Provider value={{ name: 'admin', roles: [{ role: 'admin', namespace: null }] }}>
          <Connections />
        </MeContext.Provider>
      </MemoryRouter>,
    );
    await screen.findByText('github');
    expect(screen.getByText('bearer_token: set')).toBeInTheDocument();

    await userEvent.click(screen.getByRole('button', { name: 'Test default/github' }));
    expect(await screen.findByText(/✓ ok.*HTTP 200/)).toBeInTheDocument();

    await userEvent.click(screen.getByRole('button', { name: 'Edit default/github' }));
    const form = screen.getByRole('form', { name: 'Edit connection default/github' });
    const token = within(form).getByLabelText('Bearer Token (credential)');
    expect(token).toHaveAttribute('type', 'password');
    expect(token).toHaveValue('');
    expect(token).toHaveAttribute('placeholder', 'set — leave empty to keep it');
    const url = within(form).getByLabelText('Base Url (required)');
    expect(url).toHaveValue('https://api.github.com');
    await userEvent.clear(url);
    await userEvent.type(url, 'https://ghe.example.com/api/v3');
    await userEvent.click(within(form).getByRole('button', { name: 'Save connection' }));
    await screen.findByText('Connection default/github saved.');
    expect(puts).toEqual([{ type: 'http', config: { base_url: 'https://ghe.example.com/api/v3' } }]);
  });

  it('clears a stored credential only when asked', async () => {
    const puts: unknown[] = [];
    globalThis.fetch = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
      if (String(url).startsWith('/api/v1/connection-types')) return json(TYPES);
      if (init?.method === 'PUT') {
        puts.push(JSON.parse(String(init.body)));
        return json(STORED);
      }
      return json({ items: [STORED], next_cursor: null });
    }) as typeof fetch;
    render(
      <MemoryRouter>
        <MeContext.Provider value={{ name: 'ed', roles: [{ role: 'editor', namespace: 'default' }] }}>
          <Connections />
        </MeContext.Provider>
      </MemoryRouter>,
    );
    await userEvent.click(await screen.findByRole('button', { name: 'Edit default/github' }));
    await userEvent.click(screen.getByLabelText('Clear the stored bearer token'));
    await userEvent.click(screen.getByRole('button', { name: 'Save connection' }));
    await waitFor(() => expect(puts).toEqual([{ type: 'http', config: { base_url: 'https://api.github.com', bearer_token: null } }]));
  });
});
