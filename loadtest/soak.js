// Soak test: the realistic mix at a moderate constant rate for a long time (default 30 min),
// watching the process for leaks. A second scenario scrapes sessiond's admin /metrics every
// SCRAPE_EVERY and records:
//
//   rss_mib              process_resident_memory_bytes, in MiB
//   rss_growth_mib       RSS minus its value at the end of the warm-up (WARMUP)
//   sessions_active      sessiond_sessions_active (exact count of live sessions, all of Redis)
//   sessions_growth      sessions_active minus its value at the end of the warm-up
//   rss_slope_mib_per_h  least-squares slope of RSS after the warm-up (reported, not judged)
//
// Each VU holds exactly one session (a login replaces the VU's previous one, a logout is
// followed by a login), so the live-session count stays at about the number of VUs: growth
// beyond MAX_VUS means sessions leak. RSS may grow while allocator arenas and connection
// buffers warm up, hence the warm-up; after it, it must stay flat (growth < RSS_GROWTH_MIB).
//
//   mkdir -p loadtest/results
//   k6 run loadtest/soak.js                                            # 30 minutes
//   k6 run -e DURATION=2m -e WARMUP=30s loadtest/soak.js               # a short check
//   k6 run -e ADMIN_URL=http://127.0.0.1:9464 -e RATE=300 loadtest/soak.js
//
// Service under test: rate limiters off (SESSIOND_RATE_LIMIT_IP=0,
// SESSIOND_RATE_LIMIT_LOGIN_IP=0, SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0,
// SESSIOND_RATE_LIMIT_REGISTER_IP=0, SESSIOND_LOGIN_FAILURES=0), and its admin listener
// reachable at ADMIN_URL (with several instances behind a load balancer, point ADMIN_URL at
// one of them: the RSS is that instance's, the session count is global).
//
// Environment: DURATION (30m), RATE (100 req/s), WARMUP (20 % of DURATION, at most 5m),
// SCRAPE_EVERY (10s), RSS_LIMIT_MIB (64), RSS_GROWTH_MIB (8), USERS (100), VUS (30),
// MAX_VUS (200), plus BASE_URL, ADMIN_URL, PASSWORD, USER_PREFIX, RESULTS_DIR, SUMMARY_JSON
// (lib/config.js) and MIX_* (lib/mix.js).

import http from 'k6/http';
import { check } from 'k6';
import { Gauge, Trend } from 'k6/metrics';

import { ADMIN_URL, SUMMARY_TREND_STATS, durationMs, envInt, envStr } from './lib/config.js';
import { loginPool, registerPool } from './lib/http.js';
import { mixIteration, mixLatencyThresholds } from './lib/mix.js';
import { summary } from './lib/summary.js';

const DURATION = envStr('DURATION', '30m');
const DURATION_MS = durationMs(DURATION);
const WARMUP_MS = __ENV.WARMUP ? durationMs(__ENV.WARMUP) : Math.min(300000, 0.2 * DURATION_MS);
const SCRAPE_EVERY = envStr('SCRAPE_EVERY', '10s');
const MAX_VUS = envInt('MAX_VUS', 200);

const rssMib = new Trend('rss_mib');
const rssGrowthMib = new Trend('rss_growth_mib');
const sessionsActive = new Trend('sessions_active');
const sessionsGrowth = new Trend('sessions_growth');
const rssSlope = new Gauge('rss_slope_mib_per_h');

export const options = {
  scenarios: {
    traffic: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 100),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('VUS', 30),
      maxVUs: MAX_VUS,
    },
    monitor: {
      executor: 'constant-arrival-rate',
      exec: 'monitor',
      rate: 1,
      timeUnit: SCRAPE_EVERY,
      duration: DURATION,
      preAllocatedVUs: 1,
      maxVUs: 1,
    },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
  thresholds: Object.assign(
    {
      http_req_failed: ['rate<0.01'],
      checks: ['rate>0.99'],
      // Memory: under 64 MiB resident at all times, and flat after the warm-up.
      rss_mib: [`max<${envInt('RSS_LIMIT_MIB', 64)}`],
      rss_growth_mib: [`max<${envInt('RSS_GROWTH_MIB', 8)}`],
      // Sessions: each VU holds at most one, so the live count cannot grow by more than the
      // VUs that joined after the warm-up.
      sessions_growth: [`max<=${MAX_VUS}`],
    },
    mixLatencyThresholds(),
  ),
};

export function setup() {
  const pool = registerPool(envInt('USERS', 100), { prefix: 'soak' });
  pool.tokens = loginPool(pool.users);
  return Object.assign(pool, { t0: Date.now() });
}

export default function (data) {
  mixIteration(data);
}

function sample(text, name) {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([-+0-9.eE]+)\\s*$`, 'm').exec(text);
  return m ? parseFloat(m[1]) : null;
}

// State of the single monitor VU.
const mon = { base: null, points: [] };

export function monitor(data) {
  const res = http.get(`${ADMIN_URL}/metrics`, { tags: { endpoint: 'admin_metrics' } });
  const rss = res.status === 200 ? sample(res.body, 'process_resident_memory_bytes') : null;
  const sessions = res.status === 200 ? sample(res.body, 'sessiond_sessions_active') : null;
  if (
    !check(res, {
      'admin /metrics: 200 with RSS and sessions_active': () => rss !== null && sessions !== null,
    })
  ) {
    return;
  }
  const mib = rss / (1024 * 1024);
  rssMib.add(mib);
  sessionsActive.add(sessions);
  const elapsed = Date.now() - data.t0;
  if (elapsed < WARMUP_MS) return;
  if (mon.base === null) mon.base = { rss: mib, sessions };
  rssGrowthMib.add(mib - mon.base.rss);
  sessionsGrowth.add(sessions - mon.base.sessions);
  mon.points.push([elapsed / 3600000, mib]);
  if (mon.points.length >= 3) {
    const n = mon.points.length;
    const mx = mon.points.reduce((s, p) => s + p[0], 0) / n;
    const my = mon.points.reduce((s, p) => s + p[1], 0) / n;
    const sxy = mon.points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
    const sxx = mon.points.reduce((s, p) => s + (p[0] - mx) * (p[0] - mx), 0);
    if (sxx > 0) rssSlope.add(sxy / sxx);
  }
}

export const handleSummary = summary('soak');
