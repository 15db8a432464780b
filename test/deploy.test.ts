import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { freePort, startDaemon } from './support/daemon.ts';
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
    'CabtrackCrossHostLagHigh',
    'CabtrackLivePublishFailing',
    'CabtrackPeerCallsFailing',
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
  // One of several hosts (on a standalone Redis: the multi-host layer works on one too), so that the
  // host metrics the rules and the dashboard use are there.
  const httpPort = await freePort();
  const d = await startDaemon({
    CABTRACK_REDIS_URL: redis.url,
    CABTRACK_OSRM_URL: osrm.url,
    CABTRACK_HTTP_PORT: String(httpPort),
    CABTRACK_HOST_ID: 'deploy-test',
    CABTRACK_HOST_URL: `http://127.0.0.1:${httpPort}`,
  });
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

t.test('the three-host compose file is consistent with itself, the balancer and the config', async (t) => {
  // Merge keys (<<), as docker compose reads them.
  const compose = parse(readFileSync(join(ROOT, 'deploy/hosts/compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { environment?: Record<string, string>; networks?: unknown; command?: unknown }>;
  };
  const address = (svc: string): string =>
    (compose.services[svc]!.networks as Record<string, { ipv4_address: string }>)['cabtrack']!.ipv4_address;
  const redisNodes = Object.keys(compose.services).filter((n) => /^redis-\d$/.test(n));
  t.equal(redisNodes.length, 6, 'six Redis nodes');
  const create = String((compose.services['redis-cluster']!.command as string[])[0]);
  for (const n of redisNodes) t.match(create, `${address(n)}:6379`, `${n} is in the cluster`);
  t.match(create, '--cluster-replicas 1', 'a replica per primary');
  const hosts = Object.keys(compose.services).filter((n) => n.startsWith('cabtrack-'));
  t.equal(hosts.length, 3, 'three hosts');
  const config = readFileSync(join(ROOT, 'src/config.ts'), 'utf8');
  const nginx = readFileSync(join(ROOT, 'deploy/hosts/nginx.conf'), 'utf8');
  const ids = new Set<string>();
  for (const h of hosts) {
    const env = compose.services[h]!.environment!;
    ids.add(env['CABTRACK_HOST_ID']!);
    t.equal(env['CABTRACK_HOST_URL'], `http://${address(h)}:8080`, `${h}: its URL is its address`);
    t.same(
      env['CABTRACK_REDIS_CLUSTER']!.split(',').sort(),
      redisNodes.map((n) => `${address(n)}:6379`).sort(),
      `${h}: every Redis node as a seed`,
    );
    for (const name of Object.keys(env)) t.match(config, `'${name}'`, `${h}: ${name} is a setting`);
    t.match(nginx, `server ${address(h)}:5005`, `${h} is behind the balancer`);
  }
  t.equal(ids.size, 3, 'distinct host ids');
  t.match(nginx, /hash \$remote_addr/, 'the balancer hashes the source address');
  t.match(nginx, /listen 5005 udp/);
});
