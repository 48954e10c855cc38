// Stress test: a staircase of arrival rates that climbs past the knee, the rate beyond which
// latency shoots up (or the generator cannot keep up). Each step ramps for RAMP, then holds
// its rate for HOLD; requests sent during a hold are tagged `target:<rate>`, so the summary
// has, per step, the validation latency percentiles
// (`http_req_duration{endpoint:profile,target:<rate>}`), the requests completed
// (`http_reqs{target:<rate>}`) and the failure rate. scripts/plot_latency.py turns that
// summary into the latency-vs-load plot.
//
//   mkdir -p loadtest/results
//   k6 run loadtest/stress.js
//   k6 run -e STEPS=500,1000,2000,4000 -e HOLD=10s -e RAMP=2s loadtest/stress.js
//   python3 scripts/plot_latency.py loadtest/results/stress-summary.json
//
// Past the knee the service is expected to slow down, not to fail: the thresholds are that
// no step sees 1 % failed requests and that no request outlives the service's request
// timeout (10 s). The SLO latencies are load.js's business; here they are measured.
//
// Traffic: validations only (setup() logs the user pool in once and the VUs share those
// sessions: no login during the run), or the realistic mix of load.js with MIX=realistic.
//
// Service under test: rate limiters off (SESSIOND_RATE_LIMIT_IP=0,
// SESSIOND_RATE_LIMIT_LOGIN_IP=0, SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0,
// SESSIOND_RATE_LIMIT_REGISTER_IP=0, SESSIOND_LOGIN_FAILURES=0): all k6 traffic comes from one
// address.
//
// Environment: STEPS (comma-separated rates in requests/s, default 250,500,1000,2000,3000,
// 4000,6000), RAMP (default 5s), HOLD (default 20s), USERS (default 100), VUS (pre-allocated,
// default 200), MAX_VUS (default 1000), MIX (validate | realistic), plus BASE_URL, PASSWORD,
// USER_PREFIX, RESULTS_DIR, SUMMARY_JSON (lib/config.js).

import { SUMMARY_TREND_STATS, durationMs, envInt, envStr } from './lib/config.js';
import { loginPool, registerPool } from './lib/http.js';
import { mixIteration, validationIteration } from './lib/mix.js';
import { summary } from './lib/summary.js';

const STEPS = envStr('STEPS', '250,500,1000,2000,3000,4000,6000')
  .split(',')
  .map((s) => parseInt(s.trim(), 10))
  .filter((n) => n > 0);
const RAMP = envStr('RAMP', '5s');
const HOLD = envStr('HOLD', '20s');
const MIX = envStr('MIX', 'validate');
const RAMP_MS = durationMs(RAMP);
const HOLD_MS = durationMs(HOLD);
const REQUEST_TIMEOUT_MS = 10000;

const stages = [];
for (const rate of STEPS) {
  stages.push({ duration: RAMP, target: rate });
  stages.push({ duration: HOLD, target: rate });
}

const thresholds = {
  http_req_failed: ['rate<0.01'],
  checks: ['rate>0.99'],
};
for (const rate of STEPS) {
  // Per step: the request timeout bounds every latency, errors stay under 1 %, and the step
  // did run. These also make k6 report each step's percentiles in the summary.
  thresholds[`http_req_duration{endpoint:profile,target:${rate}}`] = [`max<${REQUEST_TIMEOUT_MS}`];
  thresholds[`http_req_failed{target:${rate}}`] = ['rate<0.01'];
  thresholds[`http_reqs{target:${rate}}`] = ['count>0'];
}

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: STEPS[0],
      timeUnit: '1s',
      stages,
      preAllocatedVUs: envInt('VUS', 200),
      maxVUs: envInt('MAX_VUS', 1000),
    },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
  thresholds,
};

export function setup() {
  const pool = registerPool(envInt('USERS', 100), { prefix: 'stress' });
  pool.tokens = loginPool(pool.users);
  return Object.assign(pool, { t0: Date.now(), steps: STEPS, rampMs: RAMP_MS, holdMs: HOLD_MS });
}

/** The target rate of the step being held now, or 'ramp'. */
function currentTarget(data) {
  const elapsed = Date.now() - data.t0;
  const period = data.rampMs + data.holdMs;
  const i = Math.floor(elapsed / period);
  if (i >= data.steps.length) return 'ramp';
  return elapsed - i * period >= data.rampMs ? String(data.steps[i]) : 'ramp';
}

export default function (data) {
  const tags = { target: currentTarget(data) };
  if (MIX === 'realistic') mixIteration(data, tags);
  else validationIteration(data, tags);
}

export const handleSummary = summary('stress');
