import { lazy, Suspense, useEffect, useState } from 'react';
import { Navigate, NavLink, Route, Routes, useLocation, useNavigate } from 'react-router-dom';
import { api, isLoggedIn, logout, onSessionExpired } from './api';
import { hasRole, type Me, MeContext } from './me';
import Login from './pages/Login';
import Workflows from './pages/Workflows';
import Runs from './pages/Runs';

// Lists load with the app; every other screen is its own chunk, fetched when opened,
// so the first paint of a list (100,000 runs) does not wait for the editor or charts.
const Editor = lazy(() => import('./editor/EditorPage'));
const WorkflowPage = lazy(() => import('./pages/WorkflowPage'));
const RunPage = lazy(() => import('./pages/RunPage'));
const Dashboard = lazy(() => import('./pages/Dashboard'));
const Admin = lazy(() => import('./pages/Admin'));
const Account = lazy(() => import('./pages/Account'));
const Alerts = lazy(() => import('./pages/Alerts'));
const Workers = lazy(() => import('./pages/Workers'));
const LogSearch = lazy(() => import('./pages/LogSearch'));
const Insights = lazy(() => import('./pages/Insights'));

/** How often the header asks how many alerts fire. */
const BADGE_POLL_MS = 30_000;

/**
 * The number of firing alerts, asked on each page change and every 30 s while the tab is
 * visible. Alerts are global: only a global role binding may read them, so nobody else
 * asks (and nobody gets a 403 in the console every 30 s).
 */
function useFiringCount(enabled: boolean, where: string): number {
  const [count, setCount] = useState(0);
  useEffect(() => {
    if (!enabled) return;
    let gone = false;
    const ask = () => {
      if (document.visibilityState === 'hidden') return;
      api<{ items: unknown[] }>('/api/v1/alerts?state=firing&limit=500').then(
        (d) => !gone && setCount(d.items.length),
        () => undefined,
      );
    };
    ask();
    const id = window.setInterval(ask, BADGE_POLL_MS);
    return () => {
      gone = true;
      window.clearInterval(id);
    };
  }, [enabled, where]);
  return count;
}

function Shell() {
  const [me, setMe] = useState<Me | null>(null);
  const navigate = useNavigate();
  useEffect(() => {
    api<Me>('/api/v1/auth/me').then(setMe, () => undefined);
  }, []);
  const isAdmin = hasRole(me, 'admin');
  const location = useLocation();
  const firing = useFiringCount(hasRole(me, 'viewer'), location.pathname);
  return (
    <MeContext.Provider value={me}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand" aria-label="Plait">
          ▞ Plait
        </span>
        <nav aria-label="Main">
          <NavLink to="/" end>
            Dashboard
          </NavLink>
          <NavLink to="/workflows">Workflows</NavLink>
          <NavLink to="/runs">Runs</NavLink>
          <NavLink to="/logs">Logs</NavLink>
          <NavLink to="/editor">Editor</NavLink>
          <NavLink to="/alerts" aria-label={firing ? `Alerts, ${firing} firing` : 'Alerts'}>
            Alerts
            {firing > 0 && (
              <span className="badge count" data-testid="firing-count">
                {firing}
              </span>
            )}
          </NavLink>
          <NavLink to="/workers">Workers</NavLink>
          {hasRole(me, 'viewer', '*') && <NavLink to="/insights">Insights</NavLink>}
          {isAdmin && <NavLink to="/admin">Administration</NavLink>}
        </nav>
        <NavLink className="who" to="/account" aria-label={me ? `Account of ${me.name}` : 'Account'}>
          {me?.name ?? 'Account'}
        </NavLink>
        <button
          type="button"
          className="link"
          onClick={async () => {
            await logout();
            navigate('/login');
          }}
        >
          Log out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p aria-busy="true">Loading…</p>}>
          <Routes>
            <Route path="/" element={<Dashboard />} />
            <Route path="/workflows" element={<Workflows />} />
            <Route path="/workflows/:name" element={<WorkflowPage />} />
            <Route path="/runs" element={<Runs />} />
            <Route path="/runs/:id" element={<RunPage />} />
            <Route path="/editor/:name?" element={<Editor />} />
            <Route path="/logs" element={<LogSearch />} />
            <Route path="/alerts" element={<Alerts />} />
            <Route path="/alerts/:tab" element={<Alerts />} />
            <Route path="/workers" element={<Workers />} />
            <Route path="/insights" element={<Insights />} />
            <Route path="/insights/:tab" element={<Insights />} />
            <Route path="/account" element={<Account name={me?.name} />} />
            <Route path="/admin" element={<Admin />} />
            <Route path="/admin/:tab" element={<Admin />} />
            <Route path="*" element={<p>Page not found.</p>} />
          </Routes>
        </Suspense>
      </main>
    </MeContext.Provider>
  );
}

export default function App() {
  const location = useLocation();
  const navigate = useNavigate();
  const [, force] = useState(0);
  useEffect(
    () =>
      onSessionExpired(() => {
        const here = location.pathname + location.search;
        navigate(`/login?next=${encodeURIComponent(here)}&expired=1`);
        force((n) => n + 1);
      }),
    [location, navigate],
  );
  if (location.pathname === '/login') return <Login />;
  if (!isLoggedIn()) {
    const here = location.pathname + location.search;
    return <Navigate to={`/login?next=${encodeURIComponent(here)}`} replace />;
  }
  return <Shell />;
}
