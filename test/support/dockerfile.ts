import { cpSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, posix, relative, sep } from 'node:path';

/**
 * Just enough of `docker build` to rebuild the image's file tree without Docker (which cannot run on
 * the CI machines): the Dockerfile's instructions in order, and the build context filtered by
 * .dockerignore as Docker filters it. test/image.test.ts replays them in a temporary directory.
 *
 * Anything this does not understand (a wildcard source, `COPY --from`, ADD) throws: a Dockerfile that
 * outgrows it must fail the test, not be checked half-way.
 */

export type Step =
  | { kind: 'env'; vars: Record<string, string> }
  | { kind: 'workdir'; path: string }
  | { kind: 'copy'; sources: string[]; dest: string }
  | { kind: 'run'; command: string }
  | { kind: 'cmd'; argv: string[] }
  | { kind: 'healthcheck'; argv: string[] }
  | { kind: 'other'; instruction: string; args: string };

/** The instructions of a Dockerfile: continuation lines joined, comment lines dropped. */
export function parseDockerfile(text: string): Step[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    // Docker drops comment lines even inside a continuation.
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim() !== '') logical.push(current.trim());
    current = '';
  }
  if (current.trim() !== '') logical.push(current.trim());

  return logical.map((line): Step => {
    const m = /^(\S+)\s*(.*)$/s.exec(line)!;
    const instruction = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    switch (instruction) {
      case 'ENV':
        return { kind: 'env', vars: parseEnv(args) };
      case 'WORKDIR':
        return { kind: 'workdir', path: args };
      case 'COPY': {
        const words = args.startsWith('[') ? jsonArray(args, line) : args.split(/\s+/);
        const flags = words.filter((w) => w.startsWith('--'));
        for (const f of flags) {
          // --chown and --chmod change owners and modes only; anything else changes what is copied.
          if (!/^--(chown|chmod)=/.test(f)) throw new Error(`unsupported COPY flag ${f}: ${line}`);
        }
        const paths = words.filter((w) => !w.startsWith('--'));
        if (paths.length < 2) throw new Error(`COPY needs a source and a destination: ${line}`);
        return { kind: 'copy', sources: paths.slice(0, -1), dest: paths[paths.length - 1]! };
      }
      case 'ADD':
        throw new Error(`ADD is not supported (use COPY): ${line}`);
      case 'RUN':
        return { kind: 'run', command: args };
      case 'CMD':
        return { kind: 'cmd', argv: jsonArray(args, line) };
      case 'HEALTHCHECK': {
        const at = args.search(/\bCMD\s/);
        if (at < 0) throw new Error(`HEALTHCHECK without CMD: ${line}`);
        return { kind: 'healthcheck', argv: jsonArray(args.slice(at + 3).trim(), line) };
      }
      default:
        return { kind: 'other', instruction, args };
    }
  });
}

function jsonArray(s: string, line: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw new Error(`expected the exec (JSON array) form: ${line}`);
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new Error(`expected a JSON array of strings: ${line}`);
  }
  return v;
}

/** `ENV a=1 b="two words"`, or the legacy `ENV a one value`. */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/.exec(args);
    if (m === null) throw new Error(`bad ENV: ${args}`);
    out[m[1]!] = m[2]!;
    return out;
  }
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("((?:[^"\\]|\\.)*)"|'([^']*)'|(\S*))\s*/y;
  let at = 0;
  while (at < args.length) {
    re.lastIndex = at;
    const m = re.exec(args);
    if (m === null) throw new Error(`bad ENV at ${JSON.stringify(args.slice(at))}`);
    out[m[1]!] = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : (m[4] ?? m[5]!);
    at = re.lastIndex;
  }
  return out;
}

/**
 * .dockerignore as Docker reads it: one pattern a line (`#` comments, blank lines skipped), `!` for an
 * exception, the last matching line wins, and a pattern that matches a directory excludes everything
 * in it. `*` and `?` stay within one path segment, `**` spans any number of them.
 */
export function dockerignore(text: string): (relPath: string) => boolean {
  const rules: Array<{ exclude: boolean; re: RegExp }> = [];
  for (const raw of text.split('\n')) {
    let p = raw.trim();
    if (p === '' || p.startsWith('#')) continue;
    const exclude = !p.startsWith('!');
    if (!exclude) p = p.slice(1).trim();
    p = posix.normalize(p.replace(/^\/+/, '')).replace(/\/+$/, '');
    if (/[[\]\\]/.test(p)) throw new Error(`unsupported .dockerignore pattern ${raw}`);
    rules.push({ exclude, re: globRegExp(p) });
  }
  return (relPath) => {
    const parts = relPath.split(sep).join('/').split('/');
    let excluded = false;
    for (const { exclude, re } of rules) {
      // The path itself or any directory above it.
      for (let n = 1; n <= parts.length; n++) {
        if (re.test(parts.slice(0, n).join('/'))) {
          excluded = exclude;
          break;
        }
      }
    }
    return excluded;
  };
}

function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches no directory or any number of them; a trailing `**` matches everything below.
      if (pattern[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * COPY from the build context into `root` (the image's `/`), as Docker does it: a directory source
 * copies its contents, a file goes to `dest` or, when `dest` ends in `/` or there are several sources,
 * into it. A source that is missing or wholly excluded by .dockerignore fails, as `docker build` does.
 */
export function copyStep(
  context: string,
  root: string,
  workdir: string,
  step: { sources: string[]; dest: string },
  ignored: (relPath: string) => boolean,
): void {
  const destInImage = posix.isAbsolute(step.dest) ? step.dest : posix.join(workdir, step.dest);
  const intoDir = step.dest.endsWith('/') || step.sources.length > 1;
  const dest = join(root, destInImage);
  for (const source of step.sources) {
    if (/[*?[]/.test(source)) throw new Error(`wildcard COPY sources are not supported: ${source}`);
    if (isAbsolute(source) || source.split('/').includes('..'))
      throw new Error(`COPY source outside the context: ${source}`);
    const from = join(context, source);
    const rel = relative(context, from);
    if (!existsSync(from) || (rel !== '' && ignored(rel))) {
      throw new Error(`COPY ${source}: not found in the build context or excluded by .dockerignore`);
    }
    if (statSync(from).isDirectory()) {
      mkdirSync(dest, { recursive: true });
      cpSync(from, dest, {
        recursive: true,
        filter: (src) => {
          const r = relative(context, src);
          return r === rel || !ignored(r);
        },
      });
    } else {
      const to = intoDir ? join(dest, basename(source)) : dest;
      mkdirSync(dirname(to), { recursive: true });
      cpSync(from, to);
    }
  }
}

export function readText(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}
