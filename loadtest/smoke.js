// Smoke load test for sessiond, through the load balancer.
//
//   docker compose --profile loadtest run --rm k6
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/smoke.js
//
// setup() registers a small pool of users; each iteration then logs one in,
// reads the profile a few times, refreshes the token, lists the sessions,
// tries a wrong password once and logs out. Every request comes from the same
// client address, so the per-IP limiters may answer 429: that is counted
// (rate_limited) and not treated as a failure.
//
// Environment: BASE_URL (default http://127.0.0.1:8080), VUS (default 2),
// DURATION (default 30s), USERS (default 4).

import http from "k6/http";
import { check, sleep } from "k6";
import { Counter } from "k6/metrics";

const BASE_URL = (__ENV.BASE_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
const USERS = parseInt(__ENV.USERS || "4", 10);
const PASSWORD = "smoke-test-Passw0rd-long-enough";
const JSON_HEADERS = { "Content-Type": "application/json" };

const rateLimited = new Counter("rate_limited");

// 401 (wrong password, revoked session) and 429 are answers this test expects.
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 401, 409, 429));

export const options = {
  scenarios: {
    smoke: {
      executor: "constant-vus",
      vus: parseInt(__ENV.VUS || "2", 10),
      duration: __ENV.DURATION || "30s",
    },
  },
  thresholds: {
    checks: ["rate>0.99"],
    http_req_failed: ["rate<0.01"],
    "http_req_duration{name:profile}": ["p(95)<250"],
  },
};

function post(path, body, params = {}) {
  return http.post(`${BASE_URL}${path}`, body === null ? null : JSON.stringify(body), {
    ...params,
    headers: { ...JSON_HEADERS, ...(params.headers || {}) },
  });
}

function limited(res) {
  if (res.status === 429) {
    rateLimited.add(1);
    return true;
  }
  return false;
}

export function setup() {
  const run = Date.now().toString(36);
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const username = `smoke-${run}-${i}`;
    const res = post("/v1/auth/register", { username, password: PASSWORD }, { tags: { name: "register" } });
    if (limited(res)) {
      sleep(1);
      i--;
      continue;
    }
    check(res, { "register: 201": (r) => r.status === 201 });
    users.push(username);
  }
  return { users };
}

export default function (data) {
  const username = data.users[(__VU + __ITER) % data.users.length];

  const login = post("/v1/auth/login", { username, password: PASSWORD }, { tags: { name: "login" } });
  if (limited(login)) {
    sleep(1);
    return;
  }
  if (!check(login, { "login: 200 with a token": (r) => r.status === 200 && !!r.json("token") })) {
    sleep(1);
    return;
  }
  let auth = { headers: { Authorization: `Bearer ${login.json("token")}` } };

  for (let i = 0; i < 3; i++) {
    const profile = http.get(`${BASE_URL}/v1/profile`, { ...auth, tags: { name: "profile" } });
    if (!limited(profile)) {
      check(profile, { "profile: 200": (r) => r.status === 200 });
    }
  }

  const refreshed = post("/v1/auth/refresh", null, { ...auth, tags: { name: "refresh" } });
  if (!limited(refreshed) && check(refreshed, { "refresh: 200": (r) => r.status === 200 })) {
    auth = { headers: { Authorization: `Bearer ${refreshed.json("token")}` } };
  }

  const sessions = http.get(`${BASE_URL}/v1/sessions`, { ...auth, tags: { name: "sessions" } });
  if (!limited(sessions)) {
    check(sessions, { "sessions: 200": (r) => r.status === 200 });
  }

  const wrong = post("/v1/auth/login", { username, password: `${PASSWORD}-wrong` }, { tags: { name: "login_wrong" } });
  if (!limited(wrong)) {
    check(wrong, { "wrong password: 401": (r) => r.status === 401 });
  }

  const logout = post("/v1/auth/logout", null, { ...auth, tags: { name: "logout" } });
  if (!limited(logout)) {
    check(logout, { "logout: 204": (r) => r.status === 204 });
    const after = http.get(`${BASE_URL}/v1/profile`, { ...auth, tags: { name: "profile_after_logout" } });
    if (!limited(after)) {
      check(after, { "profile after logout: 401": (r) => r.status === 401 });
    }
  }

  sleep(1);
}
