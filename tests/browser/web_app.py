#!/usr/bin/env python3
"""The web app in a real browser (headless Chromium driven by Selenium 4).

Runs against a sessiond that is already up:

    python3 tests/browser/web_app.py --base http://127.0.0.1:8080 [--admin http://127.0.0.1:9090]

Steps, in order; the first failure stops the run with a non-zero exit and says what was seen:

  launch        start Chromium (fresh profile, DevTools performance log on)
  register      /register, form#register -> /?registered=1
  sign-in       form#login, submitted with Enter in the password field -> /account
  token-hidden  the session token is HttpOnly: not in document.cookie, not in any page source,
                response body or URL the browser saw (checked again after every later step)
  reload        /account survives a reload
  second-device a second profile signs in as the same user; the first sees two sessions,
                revokes the other one, and the second is sent back to the sign-in page
  cross-site    pages on another origin of the same site (127.0.0.1, another port) POST to
                /v1/auth/logout, /logout and /v1/auth/refresh with the user's cookie: all are
                refused with 403, the session and its cookie are unchanged (and, with --admin,
                sessiond_csrf_rejections_total grew)
  logout-back   #logout -> /, and Back does not bring the dashboard back
  phone-width   at 375x740 the sign-in form's inputs are labelled and fit the viewport

Needs `chromium` and `chromedriver` (Debian: apt-get install -y chromium chromium-driver) and
the selenium module (pip install selenium). Selenium is pointed at the chromedriver on PATH; it
never downloads a driver.
"""

import argparse
import base64
import http.server
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from urllib.parse import urlsplit

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    sys.exit("web_app.py: the selenium module is missing: install it with `pip install selenium`")

CHROMIUM = "/usr/bin/chromium"

# What chromedriver may answer, instead of "stale element reference", about an element of a
# document that is being replaced at that very moment.
DETACHED = "does not belong to the document"


def detached(element):
    """True once `element`'s document has been replaced: selenium's `staleness_of`, with the
    same answer when chromedriver reports the race above as an inspector error."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if DETACHED in str(error):
            return True
        raise
    return False
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WAIT_SECONDS = 15
PHONE = (375, 740)
CSRF_METRIC = "sessiond_csrf_rejections_total"


class StepFailed(Exception):
    """An expectation of a step did not hold."""


def check(condition, message):
    if not condition:
        raise StepFailed(message)


class Browser:
    """One Chromium profile, and a record of everything its pages received."""

    def __init__(self, name, base):
        self.name = name
        self.base = base
        self.profile = tempfile.TemporaryDirectory(prefix=f"sessiond-browser-{name}-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in CHROME_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={self.profile.name}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        driver_path = shutil.which("chromedriver")
        check(driver_path, "chromedriver is not on PATH: apt-get install -y chromium chromium-driver")
        try:
            self.driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        except Exception:
            self.profile.cleanup()
            raise
        self.driver.set_page_load_timeout(30)
        # What the pages saw: (url, page source), (url, document.cookie), every request URL and
        # redirect Location, and every response as {url, status, body (None: not retrievable)}.
        self.sources = []
        self.cookie_texts = []
        self.urls = []
        self.responses = []

    def close(self):
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self.profile.cleanup()

    # Navigation. Every helper ends with audit(), while the page's responses are still retrievable.

    def url(self, path):
        return self.base + path

    def get(self, path_or_url):
        target = path_or_url if "://" in path_or_url else self.url(path_or_url)
        self.driver.get(target)
        self.wait_loaded()
        self.audit()

    def reload(self):
        self.driver.refresh()
        self.wait_loaded()
        self.audit()

    def back(self):
        self.driver.back()
        self.wait_loaded()
        self.audit()

    def navigating(self, action):
        """Run `action` (a click, a key press) and wait until the next document has loaded."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        action()
        WebDriverWait(self.driver, WAIT_SECONDS).until(lambda _: detached(old))
        self.wait_loaded()
        self.audit()

    def wait_loaded(self):
        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def path(self):
        return urlsplit(self.driver.current_url).path

    def find(self, css):
        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        check(found, f"no `{css}` on {self.driver.current_url}")
        return found[0]

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def cookie(self, name):
        return self.driver.get_cookie(name)

    def sign_in(self, username, password, with_enter):
        form = self.find("form#login")
        form.find_element(By.CSS_SELECTOR, "input#username").send_keys(username)
        field = form.find_element(By.CSS_SELECTOR, "input#password")
        field.send_keys(password)
        if with_enter:
            self.navigating(lambda: field.send_keys(Keys.ENTER))
        else:
            self.navigating(form.find_element(By.CSS_SELECTOR, "button[type=submit]").click)

    # What the pages saw.

    def audit(self):
        driver = self.driver
        self.sources.append((driver.current_url, driver.page_source))
        self.cookie_texts.append((driver.current_url, driver.execute_script("return document.cookie")))
        received = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method"), message.get("params", {})
            if method == "Network.requestWillBeSent":
                self.urls.append(params["request"]["url"])
                redirect = params.get("redirectResponse")
                if redirect:
                    # A redirect has no body; what it can leak is its Location.
                    self.responses.append({"url": redirect["url"], "status": redirect["status"], "body": ""})
                    for name, value in redirect.get("headers", {}).items():
                        if name.lower() == "location":
                            self.urls.append(value)
            elif method == "Network.responseReceived":
                received.append((params["requestId"], params["response"]))
        for request_id, response in received:
            body = None
            try:
                reply = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": request_id})
                body = reply.get("body", "")
                if reply.get("base64Encoded"):
                    body = base64.b64decode(body).decode("utf-8", "replace")
            except WebDriverException:
                pass  # evicted or never had one; the page source is still checked
            self.responses.append({"url": response["url"], "status": response["status"], "body": body})

    def leaks(self, secret):
        """Every place the browser's pages could read `secret` from."""
        found = [f"page source of {url}" for url, source in self.sources if secret in source]
        found += [f"document.cookie on {url}" for url, text in self.cookie_texts if secret in text]
        found += [f"response body of {r['url']}" for r in self.responses if r["body"] and secret in r["body"]]
        found += [f"URL {url}" for url in self.urls if secret in url]
        return found

    def describe(self):
        try:
            source = self.driver.page_source
        except Exception:  # noqa: BLE001 - diagnostics only
            return f"  {self.name}: (no page)"
        excerpt = " ".join(source.split())[:1500]
        return f"  {self.name} at {self.driver.current_url}:\n    {excerpt}"


class AttackSite:
    """Pages on another origin of the same site (127.0.0.1, another port) that aim at sessiond."""

    def __init__(self, base):
        form_js = 'window.addEventListener("load", () => document.getElementById("attack").submit());\n'
        fetch_js = (
            f"const target = {json.dumps(base)};\n"
            'const options = { method: "POST", credentials: "include", mode: "no-cors" };\n'
            "(async () => {\n"
            '  for (const path of ["/v1/auth/refresh", "/v1/auth/logout"]) {\n'
            "    try { await fetch(target + path, options); } catch (e) { /* refused is fine */ }\n"
            "  }\n"
            '  document.title = "done";\n'
            "})();\n"
        )
        self.files = {
            "/api-logout.html": ("text/html", self.form_page(base + "/v1/auth/logout")),
            "/app-logout.html": ("text/html", self.form_page(base + "/logout")),
            "/submit.js": ("text/javascript", form_js),
            "/fetch.html": ("text/html", '<!doctype html><title>loading</title><script src="/fetch.js"></script>'),
            "/fetch.js": ("text/javascript", fetch_js),
        }
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                content_type, text = files.get(self.path, ("text/plain", None))
                body = (text if text is not None else "not found\n").encode()
                self.send_response(200 if text is not None else 404)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def form_page(action):
        return (
            "<!doctype html><title>You have won</title>"
            f'<form id="attack" method="post" action="{action}">'
            '<input type="hidden" name="claim" value="1"></form>'
            '<script src="/submit.js"></script>'
        )

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def csrf_rejections(admin):
    with urllib.request.urlopen(admin + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(CSRF_METRIC + "{") or line.startswith(CSRF_METRIC + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Run:
    def __init__(self, args):
        self.base = args.base.rstrip("/")
        self.admin = args.admin.rstrip("/") if args.admin else None
        self.cookie_name = args.cookie_name
        self.username = f"e2e-{secrets.token_hex(5)}"
        self.password = f"pw-{secrets.token_urlsafe(18)}"
        self.browsers = []
        self.secrets = set()  # every session and device token either browser held
        self.site = None
        self.first = None
        self.second = None

    def browser(self, name):
        browser = Browser(name, self.base)
        self.browsers.append(browser)
        return browser

    def close(self):
        for browser in self.browsers:
            browser.close()
        if self.site:
            self.site.close()

    def remember_secrets(self, browser):
        for cookie in browser.driver.get_cookies():
            if len(cookie["value"]) >= 16:  # tokens; a short value would match by chance
                self.secrets.add(cookie["value"])

    def assert_no_leak(self):
        for browser in self.browsers:
            self.remember_secrets(browser)
        for browser in self.browsers:
            for secret in self.secrets:
                leaks = browser.leaks(secret)
                check(not leaks, f"a cookie value was readable by the page ({browser.name}): {'; '.join(leaks)}")

    def session_cookie(self, browser):
        cookie = browser.cookie(self.cookie_name)
        check(cookie, f"no `{self.cookie_name}` cookie in the {browser.name} browser's jar")
        return cookie

    def on_account(self, browser, sessions):
        check(browser.path() == "/account", f"expected /account, the {browser.name} browser is at {browser.driver.current_url}")
        shown = browser.find("#username").text.strip()
        check(shown == self.username, f"#username shows {shown!r}, expected {self.username!r}")
        rows = browser.all("tr.session")
        check(len(rows) == sessions, f"{len(rows)} tr.session rows on /account, expected {sessions}")
        return rows

    # The steps.

    def launch(self):
        self.first = self.browser("first")
        check(self.first.driver.capabilities.get("browserName") in ("chrome", "chromium"), "not Chromium")

    def register(self):
        b = self.first
        b.get("/register")
        form = b.find("form#register")
        form.find_element(By.CSS_SELECTOR, "input#username").send_keys(self.username)
        form.find_element(By.CSS_SELECTOR, "input#password").send_keys(self.password)
        b.navigating(form.find_element(By.CSS_SELECTOR, "button[type=submit]").click)
        check(b.driver.current_url.endswith("/?registered=1"), f"after registering: {b.driver.current_url}")
        check(b.all("p.notice"), "no p.notice on /?registered=1")

    def sign_in(self):
        b = self.first
        b.sign_in(self.username, self.password, with_enter=True)
        (row,) = self.on_account(b, 1)
        classes = (row.get_attribute("class") or "").split()
        check("current" in classes, f"the only tr.session has classes {classes}, not `current`")
        check("this session" in row.text, f"the current row does not say `this session`: {row.text!r}")

    def token_hidden(self):
        b = self.first
        cookie = self.session_cookie(b)
        token = cookie["value"]
        check(len(token) >= 32, f"the `{self.cookie_name}` cookie does not look like a session token")
        check(cookie.get("httpOnly") is True, f"the `{self.cookie_name}` cookie is not HttpOnly: {cookie}")
        check(cookie.get("sameSite") in ("Lax", "Strict"), f"the `{self.cookie_name}` cookie has SameSite {cookie.get('sameSite')}")
        for other in b.driver.get_cookies():
            check(other.get("httpOnly") is True, f"cookie `{other['name']}` is readable by scripts")
        text = b.driver.execute_script("return document.cookie")
        names = [part.split("=", 1)[0].strip() for part in text.split(";") if part.strip()]
        check(self.cookie_name not in names and token not in text, "document.cookie exposes the session cookie")
        bodies = [r for r in b.responses if r["body"]]
        check(bodies, "no response body could be read through DevTools: the body check would prove nothing")
        self.assert_no_leak()

    def reload(self):
        b = self.first
        before = self.session_cookie(b)["value"]
        b.reload()
        self.on_account(b, 1)
        check(self.session_cookie(b)["value"] == before, "a reload changed the session cookie")
        self.assert_no_leak()

    def second_device(self):
        a = self.first
        c = self.second = self.browser("second")
        c.get("/")
        c.sign_in(self.username, self.password, with_enter=False)
        self.on_account(c, 2)
        a.reload()
        rows = self.on_account(a, 2)
        others = [row for row in rows if "current" not in (row.get_attribute("class") or "").split()]
        check(len(others) == 1, f"{len(others)} rows without class `current`, expected 1")
        buttons = others[0].find_elements(By.CSS_SELECTOR, "button.revoke")
        check(buttons, "the other session's row has no button.revoke")
        for row in rows:
            if row is not others[0]:
                check(not row.find_elements(By.CSS_SELECTOR, "button.revoke"), "the current row has a button.revoke")
        a.navigating(buttons[0].click)
        (row,) = self.on_account(a, 1)
        check("current" in (row.get_attribute("class") or "").split(), "the remaining row is not the current session")
        self.assert_no_leak()
        c.get("/account")
        check(c.path() == "/", f"the revoked browser opened /account and is at {c.driver.current_url}, expected /")
        check(c.all("form#login"), "the revoked browser was sent to / but sees no form#login")
        self.assert_no_leak()

    def cross_site(self):
        a = self.first
        self.site = site = AttackSite(self.base)
        check(urlsplit(site.origin).hostname == urlsplit(self.base).hostname,
              f"the attack site {site.origin} is not on the same host as {self.base}")
        before = self.session_cookie(a)["value"]
        metric_before = csrf_rejections(self.admin) if self.admin else None
        first_response = len(a.responses)
        targets = {"/v1/auth/logout", "/logout", "/v1/auth/refresh"}

        for page in ("/api-logout.html", "/app-logout.html"):
            a.driver.get(site.origin + page)
            WebDriverWait(a.driver, WAIT_SECONDS).until(lambda d: d.current_url.startswith(self.base))
            a.wait_loaded()
            time.sleep(1)
            a.audit()
        a.driver.get(site.origin + "/fetch.html")
        WebDriverWait(a.driver, WAIT_SECONDS).until(lambda d: d.title == "done")
        time.sleep(1)
        a.audit()

        attacks = [
            r for r in a.responses[first_response:]
            if r["url"].startswith(self.base) and urlsplit(r["url"]).path in targets
        ]
        seen = {urlsplit(r["url"]).path for r in attacks}
        check(seen == targets, f"the browser did not send every attack request: saw responses for {sorted(seen)}")
        allowed = [f"{r['url']} -> {r['status']}" for r in attacks if r["status"] != 403]
        check(not allowed, f"cross-site requests were not refused with 403: {', '.join(allowed)}")

        a.get("/account")
        self.on_account(a, 1)
        check(self.session_cookie(a)["value"] == before, "the session cookie changed: a cross-site refresh went through")
        if self.admin:
            grew = csrf_rejections(self.admin) - metric_before
            check(grew >= len(attacks), f"{CSRF_METRIC} grew by {grew:g}, expected at least {len(attacks)}")
        self.assert_no_leak()

    def logout_back(self):
        a = self.first
        a.navigating(a.find("#logout").click)
        check(a.path() == "/", f"after #logout the browser is at {a.driver.current_url}, expected /")
        check(a.cookie(self.cookie_name) is None, f"the `{self.cookie_name}` cookie is still in the jar after logout")
        a.back()
        source = a.driver.page_source
        check(self.username not in source, f"Back after logout shows the username ({a.driver.current_url})")
        check(not a.all("tr.session"), f"Back after logout shows the session table ({a.driver.current_url})")
        self.assert_no_leak()

    def phone_width(self):
        a = self.first
        width, height = PHONE
        a.driver.set_window_size(width, height)
        a.get("/")
        viewport = a.driver.execute_script("return window.innerWidth")
        if viewport > width:
            # Some window managers keep a desktop minimum width; emulate the phone's viewport.
            a.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            a.get("/")
            viewport = a.driver.execute_script("return window.innerWidth")
        check(viewport == width, f"the viewport is {viewport} px wide, expected {width}")
        form = a.find("form#login")
        for css in ("input#username", "input#password", "button[type=submit]"):
            element = form.find_element(By.CSS_SELECTOR, css)
            check(element.is_displayed(), f"{css} is not visible at {width} px")
            rect = element.rect
            check(rect["width"] > 0 and rect["height"] > 0, f"{css} has no size at {width} px: {rect}")
            check(rect["x"] >= 0 and rect["x"] + rect["width"] <= width,
                  f"{css} sticks out of the {width} px viewport: x={rect['x']}, width={rect['width']}")
        for field in ("username", "password"):
            labels = a.all(f"label[for={field}]")
            check(labels, f"no label[for={field}]")
            check(labels[0].is_displayed() and labels[0].text.strip(), f"label[for={field}] is hidden or empty")


STEPS = [
    ("launch", Run.launch),
    ("register", Run.register),
    ("sign-in", Run.sign_in),
    ("token-hidden", Run.token_hidden),
    ("reload", Run.reload),
    ("second-device", Run.second_device),
    ("cross-site", Run.cross_site),
    ("logout-back", Run.logout_back),
    ("phone-width", Run.phone_width),
]


def main():
    parser = argparse.ArgumentParser(description="Drive sessiond's web app in headless Chromium.")
    parser.add_argument("--base", required=True, help="sessiond's public base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--admin", help="sessiond's admin base URL, to read /metrics")
    parser.add_argument("--cookie-name", default="sid", help="the session cookie's name (default: sid)")
    run = Run(parser.parse_args())
    started = time.monotonic()
    try:
        for name, step in STEPS:
            print(f"step {name} ... ", end="", flush=True)
            step_started = time.monotonic()
            try:
                step(run)
            except Exception as error:  # noqa: BLE001 - every failure is reported the same way
                elapsed = round((time.monotonic() - step_started) * 1000)
                print(f"FAILED ({elapsed} ms)", flush=True)
                reason = str(error).strip() if isinstance(error, StepFailed) else f"{type(error).__name__}: {error}"
                print(f"web_app.py: step {name} failed: {reason}", file=sys.stderr)
                if not isinstance(error, StepFailed):
                    # Where in this script the driver's error came from.
                    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == __file__]
                    print("".join(traceback.format_list(frames)), end="", file=sys.stderr)
                for browser in run.browsers:
                    print(browser.describe(), file=sys.stderr)
                return 1
            elapsed = round((time.monotonic() - step_started) * 1000)
            print(f"ok ({elapsed} ms)", flush=True)
    finally:
        run.close()
    total = round((time.monotonic() - started) * 1000)
    checked = sum(1 for b in run.browsers for r in b.responses if r["body"] is not None)
    print(f"all {len(STEPS)} steps passed in {total} ms ({checked} responses checked for the session token)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
