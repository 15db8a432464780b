import { spawn } from 'node:child_process';

/**
 * Prometheus' own `promtool` (Debian's prometheus package; .ci/run installs it), for the tests that hold
 * the metrics page, the alert rules and the dashboard to what Prometheus accepts.
 */

export interface PromtoolResult {
  code: number | null;
  /** stdout and stderr together: promtool prints its complaints on either, depending on the command. */
  output: string;
}

export function promtool(args: string[], stdin?: string): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => {
      output += s;
    });
    p.stderr.setEncoding('utf8').on('data', (s: string) => {
      output += s;
    });
    p.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new Error('promtool is not installed (Debian: apt-get install -y prometheus; .ci/run does it)')
          : err,
      ),
    );
    p.once('close', (code) => resolve({ code, output: output.trim() }));
    p.stdin.end(stdin ?? '');
  });
}

/**
 * The metric names a metrics page exports, as PromQL sees them: a histogram's `_bucket`, `_sum` and
 * `_count` series, each sample's own name.
 */
export function exportedNames(page: string): Set<string> {
  const names = new Set<string>();
  for (const line of page.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (m !== null) names.add(m[0]);
  }
  return names;
}
