// Spike test: steady traffic, a sudden jump to SPIKE_RATE, then back. It answers two
// questions: does the service stay available through a burst it was not sized for, and does
// it recover its normal latency once the burst is over (no stuck queue, no leaked connection
// pool, no retry storm)?
//
//   mkdir -p loadtest/results
//   k6 run loadtest/spike.js                          # 100 req/s, spike to 1000 req/s
//   k6 run -e BASE_RATE=200 -e SPIKE_RATE=2000 loadtest/spike.js
//
// Timeline: BEFORE at BASE_RATE, RISE to SPIKE_RATE, SPIKE_HOLD there, FALL back, AFTER at
// BASE_RATE. Requests are tagged `phase`: before, spike, after, or ramp; the first GRACE of
// the test (every VU's first login) is tagged `warmup` and the first GRACE of AFTER
// `settling`, and neither is judged. The traffic is load.js's realistic mix.
//
// Thresholds: under 1 % failed requests overall and during the spike; during the spike no
// validation waits 1 s (p99); before and after it, validations are within the SLO (p99 < 25 ms)
// and errors under 1 %.
//
// Service under test: rate limiters off (SESSIOND_RATE_LIMIT_IP=0,
// SESSIOND_RATE_LIMIT_LOGIN_IP=0, SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0,
// SESSIOND_RATE_LIMIT_REGISTER_IP=0, SESSIOND_LOGIN_FAILURES=0): all k6 traffic comes from one
// address.
//
// Keep USERS at least as large as the VUs the spike needs (`vus_max` in the summary; k6 adds
// VUs when the existing ones are busy): setup() logs in one session per pool user and each VU
// starts with its own, but VUs beyond the pool log in on their first iteration, all within
// the spike. That login storm is a different test: sessiond sheds what exceeds its hashing
// queue with 503 (SESSIOND_HASH_QUEUE), and the spike's error threshold fails.
//
// Environment: BASE_RATE (100), SPIKE_RATE (1000), BEFORE (20s), RISE (5s), SPIKE_HOLD (20s),
// FALL (5s), AFTER (30s), GRACE (5s), USERS (100), VUS (50), MAX_VUS (1000), plus BASE_URL,
// PASSWORD, USER_PREFIX, RESULTS_DIR, SUMMARY_JSON (lib/config.js) and MIX_* (lib/mix.js).

import { SUMMARY_TREND_STATS, durationMs, envInt, envStr } from './lib/config.js';
import { loginPool, registerPool } from './lib/http.js';
import { mixIteration } from './lib/mix.js';
import { summary } from './lib/summary.js';

const BASE_RATE = envInt('BASE_RATE', 100);
const SPIKE_RATE = envInt('SPIKE_RATE', 1000);
const T = {
  before: envStr('BEFORE', '20s'),
  rise: envStr('RISE', '5s'),
  spike: envStr('SPIKE_HOLD', '20s'),
  fall: envStr('FALL', '5s'),
  after: envStr('AFTER', '30s'),
  grace: envStr('GRACE', '5s'),
};

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      stages: [
        { duration: T.before, target: BASE_RATE },
        { duration: T.rise, target: SPIKE_RATE },
        { duration: T.spike, target: SPIKE_RATE },
        { duration: T.fall, target: BASE_RATE },
        { duration: T.after, target: BASE_RATE },
      ],
      preAllocatedVUs: envInt('VUS', 50),
      maxVUs: envInt('MAX_VUS', 1000),
    },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_failed{phase:spike}': ['rate<0.01'],
    'http_req_duration{endpoint:profile,phase:before}': ['p(99)<25'],
    'http_req_duration{endpoint:profile,phase:spike}': ['p(99)<1000'],
    'http_req_duration{endpoint:profile,phase:after}': ['p(99)<25'],
    'http_req_failed{phase:after}': ['rate<0.01'],
  },
};

export function setup() {
  const pool = registerPool(envInt('USERS', 100), { prefix: 'spike' });
  pool.tokens = loginPool(pool.users);
  const ms = {};
  for (const k of Object.keys(T)) ms[k] = durationMs(T[k]);
  return Object.assign(pool, { t0: Date.now(), ms });
}

function phase(data) {
  const e = Date.now() - data.t0;
  const m = data.ms;
  const spikeStart = m.before + m.rise;
  const spikeEnd = spikeStart + m.spike;
  const afterStart = spikeEnd + m.fall;
  if (e < Math.min(m.grace, m.before / 2)) return 'warmup';
  if (e < m.before) return 'before';
  if (e < spikeStart) return 'ramp';
  if (e < spikeEnd) return 'spike';
  if (e < afterStart) return 'ramp';
  if (e < afterStart + m.grace) return 'settling';
  return 'after';
}

export default function (data) {
  mixIteration(data, { phase: phase(data) });
}

export const handleSummary = summary('spike');
