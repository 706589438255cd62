/**
 * Keystone application credential access rules: a token made from a
 * credential with rules may make only the requests one rule matches. `path`
 * is what the service itself sees (the request path without the service's
 * mount, e.g. `/v2.1/servers` for `/compute/v2.1/servers`); in a rule `*`
 * matches one path segment and `**` any number of them (keystonemiddleware's
 * semantics).
 */
export interface AccessRule {
  id: string;
  service: string;
  method: string;
  path: string;
}

export const ACCESS_RULE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

function segmentsMatch(rule: readonly string[], path: readonly string[]): boolean {
  const [head, ...rest] = rule;
  if (head === undefined) return path.length === 0;
  if (head === '**')
    return path.some((_, i) => segmentsMatch(rest, path.slice(i))) || segmentsMatch(rest, []);
  const [first, ...tail] = path;
  if (first === undefined) return false;
  return (head === '*' || head === first) && segmentsMatch(rest, tail);
}

const split = (p: string) => p.split('/').filter((s) => s.length > 0);

export function ruleMatches(
  rule: AccessRule,
  req: { service: string; method: string; path: string },
): boolean {
  return (
    rule.service === req.service &&
    rule.method.toUpperCase() === req.method.toUpperCase() &&
    segmentsMatch(split(rule.path), split(req.path))
  );
}

/** Which catalog service a request path belongs to, and the path that service sees. */
export function serviceOf(
  services: readonly { type: string; path: string }[],
  url: string,
): { service: string; path: string } | null {
  const path = url.split('?')[0] ?? url;
  for (const s of services) {
    const mount = `/${split(s.path)[0] ?? ''}`;
    if (path === mount || path.startsWith(`${mount}/`))
      return { service: s.type, path: path.slice(mount.length) || '/' };
  }
  return null;
}
