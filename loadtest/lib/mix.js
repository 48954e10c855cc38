// The realistic request mix of load.js, spike.js and soak.js (and stress.js with MIX=realistic).
//
// One iteration sends one request, drawn with these weights:
//
//   profile   90 %  GET /v1/profile (session validation; 1 in 10 sends the token as the cookie)
//   login      3 %  POST /v1/auth/login, presenting the current session (which it replaces)
//   sessions   3 %  GET /v1/sessions
//   refresh    2 %  POST /v1/auth/refresh (rotates the token)
//   logout     1 %  POST /v1/auth/logout; the VU's next iteration logs in again
//
// so that logins (drawn plus re-logins after a logout) are ~4 % of requests. Each VU holds
// exactly one session of one pool user (VU n uses user n mod USERS) and keeps it across
// iterations: the number of live sessions stays at about the number of VUs, so a growing
// `sessiond_sessions_active` during a soak means a leak. setup() logs the pool in once
// (loginPool) and VU n starts with the n-th of those sessions, so that the VUs do not all log
// in within the first second (a login storm the service would rightly shed with 503s); VUs
// beyond the pool log in on their first iteration.

import { check } from 'k6';

import { envFloat } from './config.js';
import { bearer, cookie, json, login, request } from './http.js';

export const WEIGHTS = {
  profile: envFloat('MIX_PROFILE', 90),
  login: envFloat('MIX_LOGIN', 3),
  sessions: envFloat('MIX_SESSIONS', 3),
  refresh: envFloat('MIX_REFRESH', 2),
  logout: envFloat('MIX_LOGOUT', 1),
};
const COOKIE_SHARE = envFloat('MIX_COOKIE_SHARE', 0.1);

const ORDER = ['profile', 'login', 'sessions', 'refresh', 'logout'];
const TOTAL = ORDER.reduce((sum, k) => sum + WEIGHTS[k], 0);

// Per-VU state (module scope is per VU in k6).
const vu = { token: null, seeded: false };

/**
 * Take this VU's first session from setup's data.tokens: its own (VU n gets token n-1) when
 * `shared` is false, so that a rotation or logout never pulls a session from under another
 * VU; any of them, round robin, when `shared` (validation-only traffic, which never rotates).
 */
function seed(data, shared) {
  if (vu.seeded) return;
  vu.seeded = true;
  const tokens = data.tokens || [];
  if (!tokens.length) return;
  if (shared) vu.token = tokens[(__VU - 1) % tokens.length];
  else if (__VU - 1 < tokens.length) vu.token = tokens[__VU - 1];
}

/** The pool user of this VU. */
export function userOf(data) {
  return data.users[(__VU - 1) % data.users.length];
}

function draw() {
  let r = Math.random() * TOTAL;
  for (const op of ORDER) {
    r -= WEIGHTS[op];
    if (r < 0) return op;
  }
  return 'profile';
}

function signIn(data, tags) {
  const presented = vu.token ? bearer(vu.token) : undefined;
  const { res, token } = login(userOf(data), { auth: presented, tags });
  check(res, { 'login: 200 with a token': () => token !== null });
  vu.token = token;
  return res;
}

/** GET /v1/profile with this VU's session (logging in first if it has none). */
function validate(data, tags) {
  if (!vu.token) return signIn(data, tags);
  const auth = Math.random() < COOKIE_SHARE ? cookie(vu.token) : bearer(vu.token);
  const res = request('GET', '/v1/profile', { endpoint: 'profile', auth, tags });
  if (!check(res, { 'profile: 200': (r) => r.status === 200 })) vu.token = null;
  return res;
}

/** Validation-only traffic: GET /v1/profile with a session from setup (shared between VUs). */
export function validationIteration(data, tags) {
  seed(data, true);
  return validate(data, tags);
}

/** One request of the realistic mix. `tags` are added to the request (e.g. a phase). */
export function mixIteration(data, tags) {
  seed(data, false);
  if (!vu.token) return signIn(data, tags);
  const op = draw();
  switch (op) {
    case 'login':
      return signIn(data, tags);
    case 'sessions': {
      const res = request('GET', '/v1/sessions', { endpoint: 'sessions_list', auth: bearer(vu.token), tags });
      if (!check(res, { 'sessions: 200': (r) => r.status === 200 })) vu.token = null;
      return res;
    }
    case 'refresh': {
      const res = request('POST', '/v1/auth/refresh', { endpoint: 'refresh', auth: bearer(vu.token), tags });
      const body = res.status === 200 ? json(res) : null;
      check(res, { 'refresh: 200 with a token': () => body !== null && !!body.token });
      vu.token = body ? body.token : null;
      return res;
    }
    case 'logout': {
      const res = request('POST', '/v1/auth/logout', { endpoint: 'logout', auth: bearer(vu.token), tags });
      check(res, { 'logout: 204': (r) => r.status === 204 });
      vu.token = null;
      return res;
    }
    default:
      return validate(data, tags);
  }
}

/** Per-endpoint latency thresholds of the realistic mix (the SLOs, in ms). */
export function mixLatencyThresholds(extraTag) {
  const t = extraTag ? `,${extraTag}` : '';
  return {
    [`http_req_duration{endpoint:profile${t}}`]: ['p(99)<25', 'med<5'],
    [`http_req_duration{endpoint:sessions_list${t}}`]: ['p(99)<50'],
    [`http_req_duration{endpoint:refresh${t}}`]: ['p(99)<50'],
    [`http_req_duration{endpoint:logout${t}}`]: ['p(99)<50'],
    [`http_req_duration{endpoint:login${t}}`]: ['p(95)<500', 'p(99)<1000'],
  };
}
