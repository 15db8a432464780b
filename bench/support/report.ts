import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { machineInfo } from './proc.ts';

/**
 * Every benchmark writes bench/results/<name>.json: the question, the machine it ran on (the figures
 * mean nothing without it), the mode, and its figures. bench/run.ts turns them into bench/README.md.
 */

export const QUICK = process.argv.includes('--quick');

/**
 * bench/run.ts keeps the whole set inside its time budget: it tells each benchmark when the set must be
 * done (ms since the epoch), and benchmarks with a part that can stop early (registering and filling 1M
 * drivers) stop there and say so.
 */
const DEADLINE = Number(process.env['CABTRACK_BENCH_DEADLINE'] ?? Number.POSITIVE_INFINITY);

/** Milliseconds left before the run's deadline (Infinity when run alone). */
export function remainingMs(): number {
  return DEADLINE - Date.now();
}

/** Set by bench/run.ts so that a benchmark can tell another's results from the same run. */
export const RUN_ID = process.env['CABTRACK_BENCH_RUN'] ?? `standalone-${Date.now()}`;

/** The commit measured, and whether src/ had uncommitted changes then (others edit it meanwhile). */
function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).trim();
    return dirty === '' ? head : `${head} + uncommitted changes in src/`;
  } catch {
    return 'unknown';
  }
}

export function writeResult(name: string, question: string, figures: Record<string, unknown>): void {
  const dir = new URL('../results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const doc = {
    question,
    mode: QUICK ? 'quick' : 'full',
    run: RUN_ID,
    commit: commit(),
    machine: machineInfo(),
    ...figures,
  };
  const file = new URL(`${name}.json`, dir);
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  formatFiles([fileURLToPath(file)]);
}

const BIOME = fileURLToPath(new URL('../../node_modules/.bin/biome', import.meta.url));

/**
 * Results and the README live under bench/, which the linter checks (`biome check .` in `npm test`,
 * JSON and Markdown included): as written they would fail its formatting rule, so they are formatted
 * as biome would.
 */
export function formatFiles(files: string[]): void {
  if (!existsSync(BIOME) || files.length === 0) return;
  try {
    execFileSync(BIOME, ['format', '--write', ...files], { stdio: 'ignore' });
  } catch {
    // An unformatted result is still a result; `npm run format` fixes it.
  }
}

/** A progress line on stderr (stdout stays free for a benchmark's own output). */
export function say(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
