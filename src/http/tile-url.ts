/**
 * The map tiles' URL template (CABTRACK_MAP_TILE_URL), as Leaflet takes it: `{z}/{x}/{y}` for the tile,
 * `{s}` for a subdomain (a, b, c) and `{r}` for `@2x` on high-density screens. Checked once at start-up
 * (src/config.ts), and read by the pages (src/http/pages.ts) for the one thing the server needs from it:
 * the origin the browser may load images from, in the pages' Content-Security-Policy.
 */

const PLACEHOLDERS = new Set(['{s}', '{z}', '{x}', '{y}', '{r}']);

/** Why the template is not usable, or null when it is. '' (no tiles) is usable. */
export function tileUrlProblem(template: string): string | null {
  if (template === '') return null;
  for (const p of ['{z}', '{x}', '{y}']) if (!template.includes(p)) return `must contain ${p}`;
  for (const p of template.match(/\{[^}]*\}/g) ?? []) {
    if (!PLACEHOLDERS.has(p))
      return `has an unknown placeholder ${p} (known: ${[...PLACEHOLDERS].join(' ')})`;
  }
  let url: URL;
  try {
    url = new URL(fill(template));
  } catch {
    return 'must be an http(s):// URL template';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http(s):// URL template';
  if (url.username !== '' || url.password !== '') return 'must not carry a user name or password';
  const host = /^https?:\/\/([^/?#]*)/i.exec(template)?.[1] ?? '';
  // A CSP source can only wildcard the leftmost label, so that is where {s} may stand in the host.
  if (host.slice(host.startsWith('{s}.') ? 4 : 0).includes('{')) {
    return 'may have a placeholder in its host only as the first label ({s}.example.org)';
  }
  return null;
}

/**
 * The Content-Security-Policy source the tiles come from: their origin, with `*.` for a `{s}` subdomain
 * (`https://{s}.tile.example.org/...` gives `https://*.tile.example.org`). '' for no tiles.
 */
export function tileSource(template: string): string {
  if (template === '') return '';
  const origin = new URL(fill(template)).origin;
  return /^https?:\/\/\{s\}\./i.test(template) ? origin.replace('//a.', '//*.') : origin;
}

function fill(template: string): string {
  return template
    .replace('{s}', 'a')
    .replace(/\{[zxy]\}/g, '0')
    .replace('{r}', '');
}
