// Shared configuration of the sessiond load tests, read from the environment (k6 -e NAME=value
// or exported variables).
//
//   BASE_URL      public API of the sessiond under test      (default http://127.0.0.1:8080)
//   ADMIN_URL     its admin listener (/metrics), soak.js only (default http://127.0.0.1:9464)
//   USERS         size of the user pool registered in setup() (default set by each script)
//   PASSWORD      password of every pool user                 (default below, 8+ bytes)
//   USER_PREFIX   username prefix of the pool; default: a fresh one per run, so runs do not
//                 collide. Reusing a prefix reuses existing accounts (409 on register is fine
//                 as long as PASSWORD is the same).
//   COOKIE_NAME   session cookie name                         (default sid)
//   RESULTS_DIR   where handleSummary writes <script>-summary.json (default loadtest/results;
//                 the directory must exist, k6 does not create it)
//   SUMMARY_JSON  full path of the JSON summary instead; "none" writes no file

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_URL = (__ENV.ADMIN_URL || 'http://127.0.0.1:9464').replace(/\/+$/, '');
export const PASSWORD = __ENV.PASSWORD || 'load-test Passw0rd, long enough';
export const COOKIE_NAME = __ENV.COOKIE_NAME || 'sid';
export const RESULTS_DIR = (__ENV.RESULTS_DIR || 'loadtest/results').replace(/\/+$/, '');

/** An integer from the environment, or the default. */
export function envInt(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = parseInt(raw, 10);
  if (Number.isNaN(value)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** A number (may be fractional) from the environment, or the default. */
export function envFloat(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = parseFloat(raw);
  if (Number.isNaN(value)) throw new Error(`${name} must be a number, got ${JSON.stringify(raw)}`);
  return value;
}

/** A string from the environment, or the default. */
export function envStr(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? fallback : raw;
}

/** k6 duration string ("90s", "2m", "1h30m") to milliseconds. */
export function durationMs(text) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let matched = '';
  let m;
  while ((m = re.exec(text)) !== null) {
    matched += m[0];
    total += parseFloat(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
  }
  if (matched !== text) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. 30s, 5m, 1h)`);
  return total;
}

/** Trend statistics shown in the summaries (and written to the JSON summary). */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];
