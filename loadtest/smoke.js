// Smoke test: one VU walks through every endpoint once and checks each answer, including the
// error shapes. Every check must pass and no request may get an unexpected status: a failure
// here means the deployment (or a change) is broken, not slow.
//
//   mkdir -p loadtest/results
//   k6 run loadtest/smoke.js                                    # sessiond on 127.0.0.1:8080
//   k6 run -e BASE_URL=http://127.0.0.1:18080 loadtest/smoke.js
//   docker compose --profile loadtest run --rm k6               # through the compose stack's lb
//
// Service under test: run it with the rate limiters off (SESSIOND_RATE_LIMIT_IP=0,
// SESSIOND_RATE_LIMIT_LOGIN_IP=0, SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0,
// SESSIOND_RATE_LIMIT_REGISTER_IP=0, SESSIOND_LOGIN_FAILURES=0): all k6 traffic comes from one
// address. With the limiters on (the compose stack's defaults), a 429 is waited out
// (Retry-After) and retried, and counted in `rate_limited`, so the smoke test still passes,
// only slower. The script sends the Cookie header itself, named COOKIE_NAME (default `sid`, the
// name with SESSIOND_COOKIE_SECURE=false); against a service with Secure cookies pass
// -e COOKIE_NAME=__Host-sid.
//
// Environment: BASE_URL, PASSWORD, COOKIE_NAME, RESULTS_DIR, SUMMARY_JSON (see lib/config.js).

import { check, group } from 'k6';

import { BASE_URL, COOKIE_NAME, PASSWORD, SUMMARY_TREND_STATS } from './lib/config.js';
import {
  bearer,
  checkProblem,
  checkStandardHeaders,
  cookie,
  header,
  json,
  login,
  register,
  request,
  sessionHeader,
} from './lib/http.js';
import { summary } from './lib/summary.js';

export const options = {
  scenarios: {
    smoke: { executor: 'shared-iterations', vus: 1, iterations: 1, maxDuration: '5m' },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds: {
    // Every check passes, and no request got a status the script did not ask for.
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
  },
};

export const handleSummary = summary('smoke');

const R = { retry429: true };
const opts = (o) => Object.assign({}, R, o);

function ok(res, label, status) {
  checkStandardHeaders(res, label);
  return check(res, { [`${label}: ${status}`]: (r) => r.status === status });
}

export default function () {
  const username = `smoke-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  let t1 = null;

  group('probes', () => {
    ok(request('GET', '/healthz', opts({ endpoint: 'healthz' })), 'healthz', 200);
    ok(request('GET', '/readyz', opts({ endpoint: 'readyz' })), 'readyz', 200);
  });

  group('register', () => {
    const res = register(username, R);
    ok(res, 'register', 201);
    const body = json(res);
    check(body, {
      'register: user_id and username': (b) => b !== null && typeof b.user_id === 'string' && b.username === username,
    });

    const taken = register(username.toUpperCase(), opts({ expect: [409] }));
    checkProblem(taken, 409, 'register taken (case-insensitive)');
    const invalid = register('x!', opts({ expect: [422] }));
    checkProblem(invalid, 422, 'register invalid username');
    const short = register(`${username}-b`, opts({ password: 'short', expect: [422] }));
    checkProblem(short, 422, 'register short password');
  });

  group('login', () => {
    const wrong = login(username, opts({ password: `${PASSWORD}-wrong`, expect: [401] }));
    checkProblem(wrong.res, 401, 'login wrong password');
    const unknown = login(`${username}-nobody`, opts({ expect: [401] }));
    checkProblem(unknown.res, 401, 'login unknown user');
    check(unknown.res, {
      'login: unknown user and wrong password look the same': (r) => r.body === wrong.res.body,
    });

    const first = login(username, R);
    ok(first.res, 'login', 200);
    const body = json(first.res);
    check(first.res, {
      'login: token, session_id, expires_at, idle_expires_at': () =>
        body !== null &&
        typeof body.token === 'string' &&
        typeof body.session_id === 'string' &&
        body.expires_at !== undefined &&
        body.idle_expires_at !== undefined,
      'login: session cookie set HttpOnly': (r) => {
        const c = header(r, 'Set-Cookie');
        return c.startsWith(`${COOKIE_NAME}=`) && /HttpOnly/i.test(c);
      },
    });
    t1 = first;
  });
  if (!t1 || !t1.token) return;

  let token = t1.token;
  group('profile', () => {
    for (const [how, auth] of [
      ['bearer', bearer(token)],
      ['cookie', cookie(token)],
      ['x-session-id', sessionHeader(token)],
    ]) {
      const res = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth }));
      ok(res, `profile via ${how}`, 200);
      const p = json(res);
      check(p, {
        [`profile via ${how}: user, roles and session`]: (b) =>
          b !== null &&
          b.username === username &&
          Array.isArray(b.roles) &&
          b.roles.indexOf('user') >= 0 &&
          b.session &&
          b.session.session_id === t1.sessionId,
      });
    }
  });

  // Two more sessions of the same user: one to revoke by id, one for logout-everywhere.
  const t2 = login(username, R);
  const t3 = login(username, R);
  check(null, { 'login: two more sessions': () => t2.token !== null && t3.token !== null });

  group('sessions', () => {
    const res = request('GET', '/v1/sessions', opts({ endpoint: 'sessions_list', auth: bearer(token) }));
    ok(res, 'sessions list', 200);
    const list = (json(res) || {}).sessions || [];
    check(list, {
      'sessions list: three sessions, newest first': (l) =>
        l.length === 3 && l[0].session_id === t3.sessionId && l[2].session_id === t1.sessionId,
      'sessions list: only this one is current': (l) =>
        l.filter((s) => s.current).length === 1 && l.find((s) => s.current).session_id === t1.sessionId,
    });

    const revoke = request('DELETE', `/v1/sessions/${t2.sessionId}`, opts({
      endpoint: 'session_revoke',
      name: '/v1/sessions/{session_id}',
      auth: bearer(token),
    }));
    ok(revoke, 'revoke one session', 204);
    const gone = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(t2.token), expect: [401] }));
    checkProblem(gone, 401, 'profile with the revoked session');
    const again = request('DELETE', `/v1/sessions/${t2.sessionId}`, opts({
      endpoint: 'session_revoke',
      name: '/v1/sessions/{session_id}',
      auth: bearer(token),
      expect: [404],
    }));
    checkProblem(again, 404, 'revoke a session that is gone');
  });

  group('refresh', () => {
    const res = request('POST', '/v1/auth/refresh', opts({ endpoint: 'refresh', auth: bearer(token) }));
    ok(res, 'refresh', 200);
    const body = json(res);
    check(body, {
      'refresh: new token, same session': (b) => b !== null && b.token !== token && b.session_id === t1.sessionId,
    });
    const old = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(token), expect: [401] }));
    checkProblem(old, 401, 'profile with the pre-refresh token');
    if (body && body.token) token = body.token;
    ok(request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(token) })), 'profile after refresh', 200);
  });

  group('admin route without the role', () => {
    const res = request('DELETE', `/v1/admin/users/${username}/sessions`, opts({
      endpoint: 'admin_revoke',
      name: '/v1/admin/users/{username}/sessions',
      auth: bearer(token),
      expect: [403],
    }));
    checkProblem(res, 403, 'admin revoke as a plain user');
  });

  group('logout everywhere', () => {
    const bad = request('DELETE', '/v1/sessions?except_current=maybe', opts({
      endpoint: 'sessions_revoke_all',
      auth: bearer(token),
      expect: [422],
    }));
    checkProblem(bad, 422, 'logout everywhere with a bad parameter');
    const res = request('DELETE', '/v1/sessions?except_current=true', opts({
      endpoint: 'sessions_revoke_all',
      auth: bearer(token),
    }));
    ok(res, 'logout everywhere except current', 204);
    const other = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(t3.token), expect: [401] }));
    checkProblem(other, 401, 'profile with a session ended everywhere');
    ok(request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(token) })), 'current session kept', 200);
  });

  group('logout', () => {
    const res = request('POST', '/v1/auth/logout', opts({ endpoint: 'logout', auth: bearer(token) }));
    ok(res, 'logout', 204);
    check(res, { 'logout: cookie cleared': (r) => /Max-Age=0/i.test(header(r, 'Set-Cookie')) });
    const after = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(token), expect: [401] }));
    checkProblem(after, 401, 'profile after logout');
    check(after, { 'profile after logout: WWW-Authenticate Bearer': (r) => /^Bearer/.test(header(r, 'WWW-Authenticate')) });
    const twice = request('POST', '/v1/auth/logout', opts({ endpoint: 'logout', auth: bearer(token), expect: [401] }));
    checkProblem(twice, 401, 'logout twice');
  });

  group('logout everywhere (all)', () => {
    const t4 = login(username, R);
    const t5 = login(username, R);
    const res = request('DELETE', '/v1/sessions', opts({ endpoint: 'sessions_revoke_all', auth: bearer(t4.token) }));
    ok(res, 'logout everywhere', 204);
    for (const [label, t] of [['caller', t4], ['other', t5]]) {
      const r = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(t.token), expect: [401] }));
      checkProblem(r, 401, `profile of the ${label} session after logout everywhere`);
    }
  });

  group('account', () => {
    const owner = `${username}-acct`;
    ok(register(owner, R), 'register a second account', 201);
    const first = login(owner, R);
    ok(first.res, 'login of the second account', 200);
    check(first.res, {
      'login: device token header': (r) => header(r, 'sessiond-device-token').length > 0,
      'login: device token cookie is HttpOnly and SameSite=Strict': (r) =>
        /sessiond_device=[^;]+;[^,]*HttpOnly;[^,]*SameSite=Strict/i.test(header(r, 'Set-Cookie')),
    });
    const other = login(owner, R);
    const change = (current, next, expect) =>
      request('POST', '/v1/account/password', opts({
        endpoint: 'account_password',
        auth: bearer(first.token),
        body: { current_password: current, new_password: next },
        expect,
      }));
    checkProblem(change('not the password', `${PASSWORD}-new`, [403]), 403, 'password change with a wrong current password');
    checkProblem(change(PASSWORD, 'short', [422]), 422, 'password change to a too-short password');
    const changed = change(PASSWORD, `${PASSWORD}-new`, [200]);
    ok(changed, 'password change', 200);
    const rotated = json(changed) || {};
    check(changed, { 'password change: same session, new token': () => rotated.session_id === first.sessionId && rotated.token !== first.token });
    for (const [label, t] of [['old token', first.token], ['other session', other.token]]) {
      const r = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(t), expect: [401] }));
      checkProblem(r, 401, `profile with the ${label} after a password change`);
    }
    checkProblem(login(owner, Object.assign({ expect: [401] }, R)).res, 401, 'login with the old password');
    const remove = (password, expect) =>
      request('DELETE', '/v1/account', opts({ endpoint: 'account_delete', auth: bearer(rotated.token), body: { password }, expect }));
    checkProblem(remove(PASSWORD, [403]), 403, 'account deletion with a wrong password');
    ok(remove(`${PASSWORD}-new`, [204]), 'account deletion', 204);
    const gone = request('GET', '/v1/profile', opts({ endpoint: 'profile', auth: bearer(rotated.token), expect: [401] }));
    checkProblem(gone, 401, 'profile after account deletion');
    checkProblem(
      login(owner, Object.assign({ expect: [401] }, R, { password: `${PASSWORD}-new` })).res,
      401,
      'login of a deleted account',
    );
  });

  group('error shapes', () => {
    checkProblem(
      request('GET', '/v1/profile', opts({ endpoint: 'profile', expect: [401] })),
      401,
      'profile without a credential',
    );
    checkProblem(
      request('GET', '/v1/profile', opts({ endpoint: 'profile', headers: { Authorization: 'Bearer not-a-token' }, expect: [401] })),
      401,
      'profile with a malformed bearer',
    );
    checkProblem(
      request('GET', '/v1/profile', opts({ endpoint: 'profile', headers: { Authorization: 'Basic Zm9vOmJhcg==' }, expect: [401] })),
      401,
      'profile with another auth scheme',
    );
    checkProblem(
      request('POST', '/v1/auth/login', opts({ endpoint: 'login', body: '{"username":', expect: [400] })),
      400,
      'login with malformed JSON',
    );
    checkProblem(
      request('POST', '/v1/auth/login', opts({
        endpoint: 'login',
        body: 'username=a&password=b',
        contentType: 'application/x-www-form-urlencoded',
        expect: [415],
      })),
      415,
      'login with a form body',
    );
    checkProblem(
      request('POST', '/v1/auth/login', opts({ endpoint: 'login', body: { username, password: PASSWORD, extra: 1 }, expect: [422] })),
      422,
      'login with an unknown field',
    );
    checkProblem(
      request('POST', '/v1/auth/login', opts({ endpoint: 'login', body: { username, password: 'x'.repeat(17000) }, expect: [413] })),
      413,
      'login with a body over 16 KiB',
    );
    checkProblem(request('GET', '/v1/nope', opts({ endpoint: 'unknown', expect: [404] })), 404, 'unknown route');
    checkProblem(request('PUT', '/v1/profile', opts({ endpoint: 'profile', expect: [405] })), 405, 'wrong method');
  });
}

export function setup() {
  const res = request('GET', '/healthz', { endpoint: 'healthz', expect: [200] });
  if (res.status !== 200) throw new Error(`sessiond is not answering at ${BASE_URL} (status ${res.status})`);
}
