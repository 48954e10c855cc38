// Load test: the expected production traffic at a constant arrival rate, checked against the
// service's SLOs. A breached threshold makes k6 exit 99.
//
//   mkdir -p loadtest/results
//   k6 run loadtest/load.js                                  # 200 req/s for 2 minutes
//   k6 run -e RATE=500 -e DURATION=30s loadtest/load.js
//
// The mix (lib/mix.js): ~90 % profile validations, ~4 % logins, 3 % session lists,
// 2 % refreshes, 1 % logouts. Each VU logs in as one pool user and keeps its session.
//
// Service under test: rate limiters off (SESSIOND_RATE_LIMIT_IP=0,
// SESSIOND_RATE_LIMIT_LOGIN_IP=0, SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0,
// SESSIOND_RATE_LIMIT_REGISTER_IP=0, SESSIOND_LOGIN_FAILURES=0): all k6 traffic comes from one
// address, and a 429 counts as a failed request here.
//
// Environment: RATE (requests/s, default 200), DURATION (default 2m), USERS (pool size,
// default 100), VUS (pre-allocated, default 50), MAX_VUS (default 400), plus BASE_URL,
// PASSWORD, USER_PREFIX, RESULTS_DIR, SUMMARY_JSON (lib/config.js) and MIX_* (lib/mix.js).

import { SUMMARY_TREND_STATS, durationMs, envInt, envStr } from './lib/config.js';
import { loginPool, registerPool } from './lib/http.js';
import { mixIteration, mixLatencyThresholds } from './lib/mix.js';
import { summary } from './lib/summary.js';

const RATE = envInt('RATE', 200);
const DURATION = envStr('DURATION', '2m');
const EXPECTED = (RATE * durationMs(DURATION)) / 1000;

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('VUS', 50),
      maxVUs: envInt('MAX_VUS', 400),
    },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
  thresholds: Object.assign(
    {
      // Availability: fewer than 1 % of requests fail (5xx, timeouts, unexpected 4xx).
      http_req_failed: ['rate<0.01'],
      // Correctness: every answer is the one expected (login gives a token, profile 200, ...).
      checks: ['rate>0.99'],
      // The generator kept up: fewer than 1 % of the planned iterations were dropped for
      // want of a free VU (otherwise the latencies below were measured at a lower rate).
      dropped_iterations: [`count<${Math.max(1, Math.ceil(EXPECTED * 0.01))}`],
    },
    // Latency SLOs per endpoint: validation p99 < 25 ms and median < 5 ms; session list,
    // refresh, logout p99 < 50 ms; login (argon2id) p95 < 500 ms, p99 < 1 s.
    mixLatencyThresholds(),
  ),
};

export function setup() {
  const pool = registerPool(envInt('USERS', 100), { prefix: 'load' });
  return Object.assign(pool, { tokens: loginPool(pool.users) });
}

export default function (data) {
  mixIteration(data);
}

export const handleSummary = summary('load');
