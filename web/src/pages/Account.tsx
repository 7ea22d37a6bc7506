// The signed-in user's account: the TOTP second factor (enrol with a QR code, confirm,
// recovery codes shown once, turn off) and the login sessions.
import { FormEvent, useState } from 'react';
import { api } from '../api';
import { ErrorBox, errorText, fmtTime, useApi } from '../util';

interface MfaStatus {
  enabled: boolean;
  pending: boolean;
  recovery_codes_left: number;
}

interface Enrolment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string | null;
}

interface Session {
  id: string;
  created_at: number;
  last_used_at: number;
  user_agent: string | null;
  source_ip: string | null;
  second_factor: string | null;
  current: boolean;
}

/**
 * The server's QR code SVG as a `data:` URL for an <img>: an image cannot run scripts or
 * touch the page, so the markup is never inserted into the DOM. The server's inline SVG
 * has no namespace, which an SVG image needs.
 */
export function qrDataUrl(svg: string | null | undefined): string | null {
  const s = svg?.trim();
  if (!s || !/^<svg[\s>]/.test(s)) return null;
  const withNs = /^<svg[^>]*\sxmlns=/.test(s) ? s : s.replace(/^<svg/, '<svg xmlns="http://www.w3.org/2000/svg"');
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(withNs)}`;
}

const fromEpoch = (t: number) => fmtTime(new Date(t * 1000).toISOString());

function RecoveryCodes({ codes, onDone }: { codes: string[]; onDone: () => void }) {
  const file = `data:text/plain;charset=utf-8,${encodeURIComponent(`Plait recovery codes (each works once)\n\n${codes.join('\n')}\n`)}`;
  return (
    <div className="card note" role="region" aria-labelledby="codes-title">
      <h3 id="codes-title">Recovery codes</h3>
      <p>
        Two-factor authentication is on. Keep these codes somewhere safe: each one signs you in once if you lose the app. <strong>They are shown only this once.</strong>
      </p>
      <ul className="codes" aria-label="Recovery codes">
        {codes.map((c) => (
          <li key={c} className="mono">
            {c}
          </li>
        ))}
      </ul>
      <div className="actions">
        <a className="button secondary" href={file} download="plait-recovery-codes.txt">
          Download
        </a>
        <button type="button" onClick={onDone}>
          I have saved them
        </button>
      </div>
    </div>
  );
}

function SecondFactor() {
  const status = useApi<MfaStatus>('/api/v1/auth/mfa');
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const act = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    setOk(null);
    try {
      await fn();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  const start = () =>
    act(async () => {
      setEnrolment(await api<Enrolment>('/api/v1/auth/mfa/enroll', { method: 'POST' }));
      setCode('');
    });
  const confirm = (e: FormEvent) => {
    e.preventDefault();
    void act(async () => {
      const r = await api<{ recovery_codes: string[] }>('/api/v1/auth/mfa/confirm', { method: 'POST', json: { code: code.replace(/\s+/g, '') } });
      setEnrolment(null);
      setCodes(r.recovery_codes);
      setCode('');
      await status.reload();
    });
  };
  const disable = (e: FormEvent) => {
    e.preventDefault();
    const given = code.replace(/\s+/g, '');
    const body = /^\d{6,8}$/.test(given) ? { password, code: given } : { password, recovery_code: code.trim() };
    void act(async () => {
      await api('/api/v1/auth/mfa/disable', { method: 'POST', json: body });
      setPassword('');
      setCode('');
      setOk('Two-factor authentication is off.');
      await status.reload();
    });
  };

  const s = status.data;
  const qr = qrDataUrl(enrolment?.qr_svg);
  return (
    <section className="card" aria-labelledby="mfa-title">
      <h2 id="mfa-title">Two-factor authentication</h2>
      <ErrorBox error={status.error ?? error} />
      {ok && (
        <p role="status" className="ok">
          {ok}
        </p>
      )}
      {codes && <RecoveryCodes codes={codes} onDone={() => setCodes(null)} />}
      {s && !s.enabled && !enrolment && (
        <>
          <p>Off. With it on, signing in also asks for a code from an authenticator app.</p>
          {s.pending && <p className="muted">A set-up was started but not confirmed; start again to get a new code.</p>}
          <button type="button" onClick={start} disabled={busy}>
            Set up two-factor authentication
          </button>
        </>
      )}
      {enrolment && (
        <form onSubmit={confirm} aria-labelledby="enrol-title" className="enrol">
          <h3 id="enrol-title">Scan this code with your authenticator app</h3>
          {qr ? <img src={qr} alt="QR code of the one-time password secret for your authenticator app" width={200} height={200} className="qr" /> : <p className="muted">(No QR code: type the key below.)</p>}
          <p>
            Or type this key: <code className="mono" aria-label="Secret key">{enrolment.secret.replace(/(.{4})/g, '$1 ').trim()}</code>
          </p>
          <label>
            Code from the app
            <input inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required pattern="\s*(\d\s*){6,8}" />
          </label>
          <div className="actions">
            <button type="submit" disabled={busy}>
              Confirm and turn on
            </button>
            <button type="button" className="secondary" onClick={() => setEnrolment(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {s && s.enabled && (
        <>
          <p>
            <strong>On.</strong> {s.recovery_codes_left} recovery code{s.recovery_codes_left === 1 ? '' : 's'} left.
          </p>
          <form onSubmit={disable} aria-labelledby="disable-title" className="inline-form">
            <h3 id="disable-title">Turn it off</h3>
            <label>
              Password
              <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
            </label>
            <label>
              Code from the app or a recovery code
              <input autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required />
            </label>
            <button type="submit" className="danger" disabled={busy}>
              Turn off two-factor authentication
            </button>
          </form>
        </>
      )}
    </section>
  );
}

function Sessions() {
  const sessions = useApi<Session[]>('/api/v1/auth/sessions');
  const [error, setError] = useState<string | null>(null);
  const end = async (id: string) => {
    try {
      await api(`/api/v1/auth/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' });
      await sessions.reload();
    } catch (e) {
      setError(errorText(e));
    }
  };
  return (
    <section className="card" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Signed-in sessions</h2>
      <ErrorBox error={sessions.error ?? error} />
      <table className="list">
        <thead>
          <tr>
            <th scope="col">Started</th>
            <th scope="col">Last used</th>
            <th scope="col">Browser</th>
            <th scope="col">Address</th>
            <th scope="col">Second factor</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {(sessions.data ?? []).map((s) => (
            <tr key={s.id} className={s.current ? 'current' : ''}>
              <td>{fromEpoch(s.created_at)}</td>
              <td>{fromEpoch(s.last_used_at)}</td>
              <td className="ellipsis-cell" title={s.user_agent ?? ''}>
                {s.user_agent ?? '—'}
              </td>
              <td>{s.source_ip ?? '—'}</td>
              <td>{s.second_factor ?? 'none'}</td>
              <td>
                {s.current ? (
                  <span className="muted">this session</span>
                ) : (
                  <button type="button" className="small danger" onClick={() => end(s.id)}>
                    End session
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export default function Account({ name }: { name?: string }) {
  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Account{name ? `: ${name}` : ''}</h1>
      <SecondFactor />
      <Sessions />
    </section>
  );
}
