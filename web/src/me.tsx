// Who is signed in, for the screens that offer an action only to those who may take it.
// The server decides every request; this only hides buttons that would be refused.
import { createContext, useContext } from 'react';

export interface Me {
  name: string;
  roles: { role: string; namespace: string | null }[];
}

const RANK: Record<string, number> = { viewer: 0, operator: 1, editor: 2, admin: 3 };

/**
 * True when `me` holds `role` (or one above it, the roles being a hierarchy) in
 * `namespace`; `namespace` null asks for a global binding, `'*'` for one anywhere.
 */
export function hasRole(me: Me | null, role: string, namespace: string | null = null): boolean {
  const need = RANK[role] ?? 99;
  return (me?.roles ?? []).some(
    (r) => (RANK[r.role] ?? -1) >= need && (namespace === '*' || r.namespace === null || r.namespace === namespace),
  );
}

export const MeContext = createContext<Me | null>(null);

export function useMe(): Me | null {
  return useContext(MeContext);
}
