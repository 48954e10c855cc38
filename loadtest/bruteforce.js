// Brute-force test: many VUs guess the password of one account as fast as they can. The
// service must start answering 429 (with Retry-After) quickly and must never accept a guess.
//
//   mkdir -p loadtest/results
//   k6 run loadtest/bruteforce.js
//   k6 run -e VUS=50 -e DURATION=30s loadtest/bruteforce.js
//
// Service under test: rate limiting ENABLED with its defaults (do not set
// SESSIOND_RATE_LIMIT_* or SESSIOND_LOGIN_FAILURES, or set them to the defaults:
// per-address limit on every route, a stricter per-address login limit, a per-account login
// limit, and the shared failed-login guard of SESSIOND_LOGIN_FAILURES per
// SESSIOND_LOGIN_FAILURE_WINDOW). Every request comes from the k6 host's address, so the
// per-address limiters are the first to answer.
//
// setup() registers the victim with a random password that is in no word list (so a 200 can
// only be a bug); the guesses are a small dictionary with variations. A guess that is not
// refused by a limiter is verified (argon2id) and answered 401.
//
// Thresholds: zero successful guesses; at least one 429; every 429 carries Retry-After (whole
// seconds >= 1) and a problem+json body; no unexpected status (only 401 and 429); and at most
// MAX_VERIFIED guesses got as far as a password check (default 60: with the defaults about
// 10 + 1 per second from one address, and the account guard stops the rest).
//
// Environment: VUS (20), DURATION (20s), PAUSE (seconds between a VU's guesses, 0.05),
// MAX_VERIFIED (60), plus BASE_URL, RESULTS_DIR, SUMMARY_JSON (lib/config.js).

import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

import { SUMMARY_TREND_STATS, envFloat, envInt, envStr } from './lib/config.js';
import { checkProblem, header, register, request } from './lib/http.js';
import { summary } from './lib/summary.js';

const guessesAccepted = new Counter('guesses_accepted');
const guessesRejected = new Counter('guesses_rejected');
const guessesLimited = new Counter('guesses_rate_limited');
const guessesOther = new Counter('guesses_other_status');

const PAUSE = envFloat('PAUSE', 0.05);

export const options = {
  scenarios: {
    bruteforce: {
      executor: 'constant-vus',
      vus: envInt('VUS', 20),
      duration: envStr('DURATION', '20s'),
    },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds: {
    guesses_accepted: ['count==0'],
    guesses_rate_limited: ['count>0'],
    guesses_rejected: [`count<=${envInt('MAX_VERIFIED', 60)}`],
    guesses_other_status: ['count==0'],
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
  },
};

const WORDS = [
  'password', '123456', 'qwerty', 'letmein', 'welcome', 'admin', 'dragon', 'monkey', 'sunshine',
  'iloveyou', 'princess', 'football', 'baseball', 'master', 'shadow', 'superman', 'trustno1',
  'correct horse battery staple', 'Passw0rd', 'P@ssword', 'changeme', 'secret', 'hunter2',
];

function guess(n) {
  const word = WORDS[n % WORDS.length];
  const round = Math.floor(n / WORDS.length);
  return round === 0 ? word : `${word}${round}`;
}

function randomPassword() {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let out = '';
  for (let i = 0; i < 40; i++) out += alphabet[Math.floor(Math.random() * alphabet.length)];
  return out;
}

export function setup() {
  const victim = `victim-${Date.now().toString(36)}`;
  const res = register(victim, { password: randomPassword(), retry429: true });
  if (res.status !== 201) throw new Error(`registering the victim answered ${res.status}: ${res.body}`);
  // Make the counters exist even when they stay at zero.
  guessesAccepted.add(0);
  guessesRejected.add(0);
  guessesOther.add(0);
  return { victim };
}

export default function (data) {
  const n = (__VU - 1) * 100000 + __ITER;
  const res = request('POST', '/v1/auth/login', {
    endpoint: 'login',
    body: { username: data.victim, password: guess(n) },
    expect: [401, 429],
  });
  check(res, { 'guess: never accepted': (r) => r.status !== 200 });
  if (res.status === 200) guessesAccepted.add(1);
  else if (res.status === 401) guessesRejected.add(1);
  else if (res.status === 429) {
    guessesLimited.add(1);
    checkProblem(res, 429, 'refused guess');
    check(res, {
      'refused guess: Retry-After in whole seconds >= 1': (r) => /^[1-9][0-9]*$/.test(header(r, 'Retry-After')),
    });
  } else guessesOther.add(1);
  if (PAUSE > 0) sleep(PAUSE);
}

export const handleSummary = summary('bruteforce');
