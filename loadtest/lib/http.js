// Request helpers shared by the sessiond load tests.
//
// Every request goes through request(): it tags the request with its endpoint (thresholds are
// per endpoint: `http_req_duration{endpoint:profile}`), sends no cookie unless asked to (each
// request gets an empty cookie jar, so a `sid` cookie set by an earlier response never rides
// along unnoticed), and declares which statuses are expected so that `http_req_failed` counts
// only the unexpected ones.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

import { BASE_URL, COOKIE_NAME, PASSWORD } from './config.js';

/** 429 answers seen (requests the rate limiters refused). */
export const rateLimited = new Counter('rate_limited');

const JSON_TYPE = 'application/json';
const callbacks = {};

/** A cached response callback for these expected statuses (ints or {min, max}). */
function expected(statuses) {
  const key = JSON.stringify(statuses);
  if (!callbacks[key]) callbacks[key] = http.expectedStatuses(...statuses);
  return callbacks[key];
}

const OK = [{ min: 200, max: 299 }];

/** Authentication of a request: a token sent as bearer (default), cookie or x-session-id. */
export const bearer = (token) => ({ bearer: token });
export const cookie = (token) => ({ cookie: token });
export const sessionHeader = (token) => ({ header: token });

function authHeaders(auth, headers) {
  if (!auth) return headers;
  if (auth.bearer !== undefined) headers.Authorization = `Bearer ${auth.bearer}`;
  else if (auth.cookie !== undefined) headers.Cookie = `${COOKIE_NAME}=${auth.cookie}`;
  else if (auth.header !== undefined) headers['X-Session-Id'] = auth.header;
  return headers;
}

/**
 * One request to the public API.
 *
 * opts: endpoint (tag, required), auth (bearer(t) | cookie(t) | sessionHeader(t)), body (object,
 * sent as JSON; a string is sent as is), contentType, headers, expect (expected statuses,
 * default 2xx), name (URL grouping tag for paths with ids), tags (more tags), retry429 (wait
 * Retry-After and retry, up to 5 times: for scripts that may meet the rate limiters).
 */
export function request(method, path, opts = {}) {
  const headers = authHeaders(opts.auth, Object.assign({}, opts.headers || {}));
  let body = null;
  if (opts.body !== undefined && opts.body !== null) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['Content-Type'] = opts.contentType || JSON_TYPE;
  }
  const statuses = (opts.expect || OK).concat(opts.retry429 ? [429] : []);
  const tags = Object.assign({ endpoint: opts.endpoint }, opts.tags || {});
  if (opts.name) tags.name = opts.name;
  const params = { headers, tags, jar: new http.CookieJar(), responseCallback: expected(statuses) };
  const url = `${BASE_URL}${path}`;
  for (let attempt = 0; ; attempt++) {
    const res = http.request(method, url, body, params);
    if (res.status !== 429) return res;
    rateLimited.add(1, tags);
    if (!opts.retry429 || attempt >= 5) return res;
    sleep(retryAfter(res));
  }
}

/** The parsed JSON body, or null. */
export function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

/** The value of a response header, case-insensitively ('' when absent). */
export function header(res, name) {
  const lower = name.toLowerCase();
  for (const key in res.headers) {
    if (key.toLowerCase() === lower) return res.headers[key];
  }
  return '';
}

/** Checks that the response is an RFC 9457 problem document with this status. */
export function checkProblem(res, status, label) {
  return check(res, {
    [`${label}: ${status}`]: (r) => r.status === status,
    [`${label}: problem+json`]: (r) => header(r, 'Content-Type').startsWith('application/problem+json'),
    [`${label}: type, title, status, detail`]: (r) => {
      const p = json(r);
      return (
        p !== null &&
        typeof p.type === 'string' &&
        typeof p.title === 'string' &&
        p.status === status &&
        typeof p.detail === 'string'
      );
    },
  });
}

/** Checks the headers every sessiond response carries. */
export function checkStandardHeaders(res, label) {
  return check(res, {
    [`${label}: Cache-Control no-store`]: (r) => header(r, 'Cache-Control') === 'no-store',
    [`${label}: X-Content-Type-Options nosniff`]: (r) => header(r, 'X-Content-Type-Options') === 'nosniff',
  });
}

/** POST /v1/auth/register. */
export function register(username, opts = {}) {
  return request('POST', '/v1/auth/register', Object.assign({ endpoint: 'register' }, opts, {
    body: { username, password: opts.password || PASSWORD },
  }));
}

/**
 * POST /v1/auth/login. Returns { res, token, sessionId } (token null unless 200).
 * opts.auth presents a current session, which the login then replaces (rotation).
 */
export function login(username, opts = {}) {
  const res = request('POST', '/v1/auth/login', Object.assign({ endpoint: 'login' }, opts, {
    body: { username, password: opts.password || PASSWORD },
  }));
  const body = res.status === 200 ? json(res) : null;
  return { res, token: body ? body.token : null, sessionId: body ? body.session_id : null };
}

/**
 * Register `count` users (argon2 makes this slow: do it once, in setup(), and reuse the pool).
 * Usernames are `<prefix>-<n>`; the prefix is USER_PREFIX or a fresh one per run. A 409 means
 * the account exists already (a reused USER_PREFIX): it is kept, and must have PASSWORD.
 * Throws (aborting the test) on any other failure.
 */
export function registerPool(count, opts = {}) {
  const prefix = __ENV.USER_PREFIX || `${opts.prefix || 'lt'}-${Date.now().toString(36)}`;
  const users = [];
  for (let n = 0; n < count; n++) users.push(`${prefix}-${n}`);
  const accepted = (s) => s === 201 || s === 409;
  const batchSize = opts.batch || 8;
  for (let start = 0; start < users.length; start += batchSize) {
    const chunk = users.slice(start, start + batchSize);
    const responses = http.batch(
      chunk.map((username) => ({
        method: 'POST',
        url: `${BASE_URL}/v1/auth/register`,
        body: JSON.stringify({ username, password: PASSWORD }),
        params: {
          headers: { 'Content-Type': JSON_TYPE },
          tags: { endpoint: 'register' },
          jar: new http.CookieJar(),
          responseCallback: expected([201, 409, 429]),
        },
      })),
    );
    responses.forEach((res, i) => {
      let r = res;
      if (r.status === 429) r = register(chunk[i], { retry429: true, expect: [201, 409] });
      if (!accepted(r.status)) {
        throw new Error(`registering ${chunk[i]} answered ${r.status}: ${String(r.body).slice(0, 200)}`);
      }
    });
  }
  return { prefix, users };
}

function retryAfter(res) {
  return Math.min(30, Math.max(1, parseInt(res.headers['Retry-After'] || '1', 10) || 1));
}

/**
 * Log every user of the pool in once, a few at a time (so that the service's password-hash
 * queue is never full), and return their tokens in pool order. Done in setup(), this spares
 * the test a login storm when all VUs start at once. A 503 (hash queue full) or 429 is waited
 * out and retried. Tagged `endpoint:setup_login`, apart from the measured logins.
 */
export function loginPool(users, opts = {}) {
  const tokens = [];
  const batchSize = opts.batch || 8;
  const params = () => ({
    headers: { 'Content-Type': JSON_TYPE },
    tags: { endpoint: 'setup_login' },
    jar: new http.CookieJar(),
    responseCallback: expected([200, 429, 503]),
  });
  for (let start = 0; start < users.length; start += batchSize) {
    const chunk = users.slice(start, start + batchSize);
    const responses = http.batch(
      chunk.map((username) => ({
        method: 'POST',
        url: `${BASE_URL}/v1/auth/login`,
        body: JSON.stringify({ username, password: PASSWORD }),
        params: params(),
      })),
    );
    responses.forEach((res, i) => {
      let r = res;
      for (let attempt = 0; (r.status === 429 || r.status === 503) && attempt < 10; attempt++) {
        sleep(retryAfter(r));
        r = http.post(`${BASE_URL}/v1/auth/login`, JSON.stringify({ username: chunk[i], password: PASSWORD }), params());
      }
      const body = r.status === 200 ? json(r) : null;
      if (!body || !body.token) {
        throw new Error(`logging ${chunk[i]} in answered ${r.status}: ${String(r.body).slice(0, 200)}`);
      }
      tokens.push(body.token);
    });
  }
  return tokens;
}
