import { FormEvent, useEffect, useRef, useState } from 'react';
import { useNavigate, useSearchParams } from 'react-router-dom';
import { ApiError, login } from '../api';
import { ErrorBox, errorText } from '../util';

export default function Login() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [otp, setOtp] = useState('');
  const [showOtp, setShowOtp] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [askOtp, setAskOtp] = useState(false);
  const otpInput = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (askOtp) otpInput.current?.focus();
  }, [askOtp]);
  const next = params.get('next');
  const safeNext = next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/';

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password, otp || undefined);
      navigate(safeNext, { replace: true });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'mfa_required') {
        // the password was right: now the second factor
        setShowOtp(true);
        setAskOtp(true);
        setError(null);
      } else {
        if (err instanceof ApiError && err.code === 'mfa_invalid') setOtp('');
        setError(errorText(err));
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" className="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Sign in to Plait</h1>
        {params.get('expired') && <p className="note">Your session ended. Sign in again to continue.</p>}
        <label>
          User name
          <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </label>
        {askOtp && (
          <p className="note" role="status">
            This account has two-factor authentication: enter the code from your authenticator app, or one of your recovery codes.
          </p>
        )}
        {showOtp ? (
          <label>
            One-time code
            <input ref={otpInput} name="otp" inputMode="numeric" autoComplete="one-time-code" value={otp} onChange={(e) => setOtp(e.target.value)} required={askOtp} />
          </label>
        ) : (
          <button type="button" className="link" onClick={() => setShowOtp(true)}>
            My account has a second factor
          </button>
        )}
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
