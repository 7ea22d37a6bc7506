import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { qrDataUrl } from './Account';
import Login from './Login';

describe('the QR code of a TOTP enrolment', () => {
  it('becomes a data: image with the SVG namespace, never markup in the page', () => {
    const url = qrDataUrl('<svg width="164" height="164" class="segno"><path d="M4 4.5h7"/></svg>')!;
    expect(url.startsWith('data:image/svg+xml;charset=utf-8,')).toBe(true);
    const svg = decodeURIComponent(url.slice(url.indexOf(',') + 1));
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="164"/);
    expect(qrDataUrl('<svg xmlns="http://www.w3.org/2000/svg"><path/></svg>')).toContain(encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg"><path/>'));
  });

  it('refuses anything that is not an SVG document', () => {
    expect(qrDataUrl(null)).toBeNull();
    expect(qrDataUrl('<script>alert(1)</script>')).toBeNull();
    expect(qrDataUrl('<svgx>')).toBeNull();
  });
});

describe('login with a second factor', () => {
  it('asks for the code when the server says mfa_required, then sends it', async () => {
    const forms: string[] = [];
    globalThis.fetch = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
      const body = String(init?.body);
      forms.push(body);
      if (!body.includes('otp=')) {
        return new Response(JSON.stringify({ error: { code: 'mfa_required', message: 'a second factor is required' } }), { status: 401, headers: { 'Content-Type': 'application/json' } });
      }
      return new Response(JSON.stringify({ access_token: 'a', refresh_token: 'r', token_type: 'bearer' }), { headers: { 'Content-Type': 'application/json' } });
    }) as typeof fetch;
    render(
      <MemoryRouter initialEntries={['/login']}>
        <Login />
      </MemoryRouter>,
    );
    await userEvent.type(screen.getByLabelText('User name'), 'tess');
    await userEvent.type(screen.getByLabelText('Password'), 'secret-pass');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByText(/This account has two-factor authentication/)).toBeInTheDocument();
    const otp = screen.getByLabelText('One-time code');
    expect(otp).toHaveFocus();
    await userEvent.type(otp, '123456');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(forms).toHaveLength(2);
    expect(forms[1]).toContain('otp=123456');
  });
});
