import { lazy, Suspense, useEffect, useState } from 'react';
import { Navigate, NavLink, Route, Routes, useLocation, useNavigate } from 'react-router-dom';
import { api, isLoggedIn, logout, onSessionExpired } from './api';
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

interface Me {
  name: string;
  roles: { role: string; namespace: string | null }[];
}

function Shell() {
  const [me, setMe] = useState<Me | null>(null);
  const navigate = useNavigate();
  useEffect(() => {
    api<Me>('/api/v1/auth/me').then(setMe, () => undefined);
  }, []);
  const isAdmin = me?.roles.some((r) => r.role === 'admin' && r.namespace === null) ?? false;
  return (
    <>
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
          <NavLink to="/editor">Editor</NavLink>
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
            <Route path="/account" element={<Account name={me?.name} />} />
            <Route path="/admin" element={<Admin />} />
            <Route path="/admin/:tab" element={<Admin />} />
            <Route path="*" element={<p>Page not found.</p>} />
          </Routes>
        </Suspense>
      </main>
    </>
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
