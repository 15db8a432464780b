import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { startDaemon } from './support/daemon.ts';
import { startOsrmServer } from './support/osrm-server.ts';
import { exportedNames, promtool } from './support/promtool.ts';
import { startRedis } from './support/redis.ts';

/**
 * deploy/: the Prometheus alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`), the Grafana dashboard's queries are valid PromQL, and every cabtrack metric
 * the rules and the dashboard use is one a live daemon (with Redis and OSRM) exports.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RULES = join(ROOT, 'deploy/prometheus/alerts.yml');
const RULE_TESTS = join(ROOT, 'deploy/prometheus/alerts.test.yml');
const DASHBOARD = join(ROOT, 'deploy/grafana/cabtrack.json');

/**
 * Metrics the rules and the dashboard use that the daemon does not export yet, each with the work that
 * adds it. Remove a name once it is exported: the last test fails until then, so this list cannot go
 * stale, and nothing else is tolerated.
 */
const PENDING = new Set<string>([]);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap(
  (g) => g.rules,
);

interface Panel {
  type: string;
  id: number;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Array<{ expr: string; refId: string }>;
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  panels: Panel[];
  templating: { list: Array<{ name: string; definition?: string }> };
};
const panels = dashboard.panels.filter((p) => p.type !== 'row');

/** Grafana's variables, as Prometheus would see them once Grafana has filled them in. */
const grafanaToPromQL = (expr: string): string =>
  expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replaceAll('$instance', '.*');

const metricNames = (expr: string): string[] => expr.match(/\bcabtrack_[a-z0-9_]+/g) ?? [];

t.test('alert rules: promtool check rules', async (t) => {
  const r = await promtool(['check', 'rules', RULES]);
  t.equal(r.code, 0, r.output);
  t.match(r.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
  t.notMatch(r.output, /WARNING|FAILED/);
  const alerts = rules.map((r) => r.alert);
  for (const name of [
    'CabtrackIngestLoss',
    'CabtrackRejectedShareHigh',
    'CabtrackWorkerRestarted',
    'CabtrackRedisDown',
    'CabtrackOsrmBreakerOpen',
    'CabtrackReplicaLagHigh',
  ]) {
    t.ok(alerts.includes(name), `${name} is there`);
  }
});

t.test('alert rules: promtool test rules (ingest loss, worker restarts, Redis down)', async (t) => {
  const r = await promtool(['test', 'rules', RULE_TESTS]);
  t.equal(r.code, 0, r.output);
  t.match(r.output, /SUCCESS/);
});

t.test("the dashboard's queries are valid PromQL", async (t) => {
  t.ok(panels.length >= 20, `${panels.length} panels`);
  t.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids unique');
  for (const p of panels) {
    t.ok((p.targets ?? []).length > 0, `${p.title}: has a query`);
    t.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title}: within the 24 columns`);
  }
  // promtool parses rule files only: each query becomes a recording rule, so a PromQL error in any
  // panel fails the check with the panel's name.
  const dir = mkdtempSync(join(tmpdir(), 'cabtrack-dashboard-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const asRules = panels.flatMap((p) =>
    (p.targets ?? []).map((q) => ({
      record: `dashboard:${p.id}:${q.refId}`,
      expr: grafanaToPromQL(q.expr),
      labels: { panel: p.title },
    })),
  );
  const file = join(dir, 'dashboard-rules.yml');
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: asRules }] }));
  const r = await promtool(['check', 'rules', file]);
  t.equal(r.code, 0, r.output);
  t.match(r.output, new RegExp(`SUCCESS: ${asRules.length} rules found`));
});

t.test('every metric the rules and the dashboard use is one the daemon exports', async (t) => {
  const redis = await startRedis(t);
  const osrm = await startOsrmServer();
  t.teardown(() => osrm.close());
  const d = await startDaemon({ CABTRACK_REDIS_URL: redis.url, CABTRACK_OSRM_URL: osrm.url });
  t.teardown(() => d.stop());
  // A request, so the HTTP histogram has series.
  t.equal((await d.get('/v1/drivers/nearest?lat=1&lon=1')).status, 200);
  const page = (await d.get('/metrics', null)).text;
  const exported = exportedNames(page);
  t.ok(exported.has('cabtrack_redis_up'), 'a daemon with Redis');

  const used = new Map<string, string>();
  for (const r of rules) for (const n of metricNames(r.expr)) used.set(n, `alert ${r.alert ?? r.record}`);
  for (const p of panels)
    for (const q of p.targets ?? []) for (const n of metricNames(q.expr)) used.set(n, `panel ${p.title}`);
  for (const v of dashboard.templating.list)
    for (const n of metricNames(v.definition ?? '')) used.set(n, `variable ${v.name}`);
  t.ok(used.size >= 25, `${used.size} metric names used`);

  for (const [name, where] of used) {
    if (PENDING.has(name)) continue;
    t.ok(exported.has(name), `${name} (${where}) is exported`);
  }
  for (const name of PENDING) {
    t.ok(used.has(name), `${name} is pending and used`);
    t.notOk(exported.has(name), `${name} is exported now: remove it from PENDING in test/deploy.test.ts`);
  }
});
