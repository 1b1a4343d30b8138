#!/usr/bin/python3
"""The node's web page in a real browser, against real nodes.

Run by tests/integration/web_flow.sh, which starts a broker and three nodes
(gemeente-diemen, politie-mn, belastingdienst), each with its HTTP API on
127.0.0.1. A clerk at the municipality and an analyst at the police each
sign in with an application token in their own headless Chromium:

- the clerk records a signal to the police (first with mistakes the node
  names all at once, each said in the page's language next to its field),
  the analyst sees it arrive live, opens it, acknowledges it and gives
  feedback (first on a category the agreement refuses: said in Dutch, and
  in English, asking to correct no marked field); the clerk follows the
  signal (the police receipted it) and reads the feedback;
- the clerk sends a query to police and tax, the analyst replies, and the
  clerk's follow-up shows who replied and who has not; opened again, the
  query says it was answered (linking to the reply) and offers no second
  reply, as does a query replied to outside the page (on the node's
  socket, as keten-node reply does), and a query not answered yet offers
  the reply button;
- switching the language with a form open (the record form, the feedback
  form) redraws its labels, buttons and the problems shown in the new
  language and keeps what was typed and chosen;
- axe-core checks every screen (WCAG 2.1 A and AA, and axe's best
  practices): zero violations;
- a change without the X-CSRF-Token header, or from another Origin, is
  refused (403) and the same request with it is answered; the security
  headers are on every answer; no message content or subject is in any
  URL either browser requested, nor in the nodes' access logs; logging out
  ends the session (the API answers 401 after), and a session ended
  elsewhere is shown as ended; English is selectable; a read-only token
  is offered no change, and the API refuses it one (403).

Each check prints one line "PASS what" or "FAIL what: why"; the wrapper turns
them into TAP. The exit code is 0 only when every check passed. With
--screenshots DIR (KETEN_WEB_SCREENSHOTS) it saves the main screens as PNGs.
"""

import argparse
import base64
import http.client
import json
import os
import re
import socket
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
WAIT_S = 30  # the longest a step waits for the page or the network
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

# What the clerk and the analyst type: none of it may appear in a URL or a log.
SIGNAL_SUMMARY = "Adres staat op naam van 9 personen; ramen afgeplakt"
SIGNAL_STREET = "Hoofdstraat 17"
SIGNAL_POSTCODE = "1111 AA"
SIGNAL_TOWN = "Diemen"
SIGNAL_COMPANY = "KvK 87654321"
FEEDBACK_SUMMARY = "Opgepakt in het RIEC-overleg; controle gepland"
QUERY_SUMMARY = "Thematische adrescontrole: bekend bij uw organisatie?"
QUERY_STREET = "Zuiderstraat 4"
REPLY_SUMMARY = "Geen registratie op dit adres"
# A partner's text with markup: shown as text, never run (the page builds
# the DOM with textContent; the CSP allows no inline script either).
SIGNAL_PERSON = "<img src=x onerror=window.__ketenXss=1>J. Jansen"
SECRETS = ["__ketenXss", "J. Jansen", SIGNAL_SUMMARY, SIGNAL_STREET, SIGNAL_POSTCODE, SIGNAL_COMPANY, FEEDBACK_SUMMARY,
           QUERY_SUMMARY, QUERY_STREET, REPLY_SUMMARY, "afgeplakt", "Hoofdstraat",
           "Zuiderstraat", "87654321", "RIEC-overleg", "registratie"]

RESULTS = []


def check(what, cond, why=""):
    RESULTS.append(bool(cond))
    if cond:
        print(f"PASS {what}", flush=True)
    else:
        print(f"FAIL {what}: {why}".rstrip(": "), flush=True)
    return bool(cond)


# ---- HTTP to the node ---------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the node's Unix socket HOME/api.sock (the operator's)."""

    def __init__(self, path):
        super().__init__("localhost", timeout=WAIT_S)
        self.sock_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(WAIT_S)
        s.connect(self.sock_path)
        self.sock = s


def request(conn, method, path, body=None, headers=None):
    """(status, headers dict with lower-case names, parsed JSON or None, raw)."""
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json; charset=utf-8"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    raw = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    try:
        js = json.loads(raw) if raw else None
    except ValueError:
        js = None
    conn.close()
    return r.status, hdrs, js, raw


class Node:
    def __init__(self, spec):
        self.id, self.home, port = spec.split(":")
        self.port = int(port)
        self.base = f"http://127.0.0.1:{self.port}"

    def unix(self, method, path, body=None):
        return request(UnixHTTPConnection(os.path.join(self.home, "api.sock")), method, path, body)

    def tcp(self, method, path, body=None, headers=None):
        return request(http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S),
                       method, path, body, headers)

    def make_token(self, name, scopes):
        st, _, js, raw = self.unix("POST", "/v1/tokens", {"name": name, "scopes": scopes})
        ok = st == 201 and isinstance(js, dict) and re.fullmatch(r"ktn_[A-Za-z0-9_-]{43}", js.get("token", ""))
        check(f"{self.id}: the operator makes token {name} on the Unix socket (201, ktn_ + 43 base64url)",
              ok, f"status {st}: {raw[:300]!r}")
        if not ok:
            raise SystemExit(1)
        st, _, lst, raw = self.unix("GET", "/v1/tokens")
        listed = [t for t in (lst or {}).get("tokens", []) if t.get("name") == name]
        check(f"{self.id}: GET /v1/tokens lists {name} without the token itself",
              st == 200 and len(listed) == 1 and "token" not in listed[0], f"status {st}: {raw[:300]!r}")
        return js["token"]


# ---- the browser -------------------------------------------------------------

def browser(profile_dir):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1000", "--lang=nl-NL", f"--user-data-dir={profile_dir}",
              "--no-first-run", "--disable-extensions", "--disable-background-networking",
              "--disable-sync", "--disable-component-update"):
        o.add_argument(a)
    o.add_experimental_option("prefs", {"intl.accept_languages": "nl-NL,nl"})
    o.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(WAIT_S)
    d.set_script_timeout(WAIT_S)
    d.visited = []  # every URL the browser requested (from the performance log)
    d.history = []  # the address bar after each step
    return d


def collect_urls(d):
    for entry in d.get_log("performance"):
        try:
            m = json.loads(entry["message"])["message"]
        except (KeyError, ValueError):
            continue
        if m.get("method") == "Network.requestWillBeSent":
            d.visited.append(m["params"]["request"]["url"])
    d.history.append(d.current_url)


def wait(d, cond, what="", timeout=WAIT_S):
    try:
        # The page redraws a screen when an event comes: an element found a
        # moment ago may be gone; look again.
        return WebDriverWait(d, timeout, poll_frequency=0.2,
                             ignored_exceptions=[StaleElementReferenceException]).until(cond)
    except TimeoutException:
        return None


def css(d, sel):
    return d.find_elements(By.CSS_SELECTOR, sel)


def visible(sel):
    def f(d):
        els = [e for e in d.find_elements(By.CSS_SELECTOR, sel) if e.is_displayed()]
        return els[0] if els else False
    return f


class Seen:
    """What an element said when it was found (the element itself may be
    redrawn by the next event)."""

    def __init__(self, text):
        self.text = text


def text_in(sel, text):
    def f(d):
        for e in d.find_elements(By.CSS_SELECTOR, sel):
            t = e.text
            if text in t:
                return Seen(t)
        return False
    return f


def recipient_state(who, state):
    """The follow-up's row of recipient WHO has the state badge STATE."""
    def f(d):
        got = d.execute_script(
            "for (const tr of document.querySelectorAll('#recipient-table tbody tr')) {"
            "  if (tr.cells[0].textContent.includes(arguments[0]))"
            "    return [tr.querySelector('.badge').textContent, tr.textContent]; }"
            "return null;", who)
        return Seen(got[1]) if got and got[0] == state else False
    return f


def go(d, node, fragment):
    d.execute_script("window.location.hash = arguments[0];", fragment)
    collect_urls(d)


def h1_is(d, text):
    return wait(d, text_in("main h1", text), f"heading {text}") is not None


class Axe:
    def __init__(self, path, shots):
        with open(path, encoding="utf-8") as f:
            self.src = f.read()
        self.shots = shots

    def run(self, d, screen):
        """axe-core over the page as it is: zero violations expected."""
        d.execute_script(self.src + "\n;window.__ketenAxe = axe;")
        res = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__ketenAxe.run(document, {runOnly: {type: 'tag', values: arguments[0]},"
            " resultTypes: ['violations']})"
            ".then(r => done({violations: r.violations.map(v => ({id: v.id, impact: v.impact,"
            " help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' +"
            " (n.failureSummary || '').replace(/\\s+/g, ' '))}))}))"
            ".catch(e => done({error: String(e)}));", AXE_TAGS)
        if "error" in res:
            check(f"axe-core ran on the screen {screen}", False, res["error"])
            return
        stray = d.execute_script(
            "return document.getElementById('view').innerText.split('\\n')"
            ".filter(l => /^(null|undefined|NaN|\\[object Object\\])$/.test(l.trim()));")
        check(f"the screen {screen} shows no stray null, undefined or NaN", not stray, str(stray))
        v = res["violations"]
        detail = "; ".join(f"{x['id']} ({x['impact']}): {x['help']} at {x['nodes'][:3]}" for x in v)
        check(f"axe-core: 0 violations on the screen {screen} (found {len(v)})", len(v) == 0, detail)

    def shot(self, d, name, whole=True):
        """A PNG of the screen: the whole page (at most 2400 px high), or
        what the window shows (whole=False: where the focus is)."""
        if not self.shots:
            return
        os.makedirs(self.shots, exist_ok=True)
        path = os.path.join(self.shots, name + ".png")
        if not whole:
            d.save_screenshot(path)
            return
        size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        png = d.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2400),
                     "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(png["data"]))


def login(d, node, token, who):
    d.get(node.base + "/")
    collect_urls(d)
    ok = wait(d, visible("#login-token"), "login form")
    check(f"{who}: the page opens on the sign-in screen (no session yet)", ok)
    el = css(d, "#login-token")[0]
    el.clear()
    el.send_keys(token)
    d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    ok = wait(d, visible("#nav a[data-view=inbox]"), "signed in")
    check(f"{who}: signed in with the application token (the menu appears)", ok)
    ok = h1_is(d, "Inbox")
    check(f"{who}: the inbox is the first screen", ok)
    collect_urls(d)


def choose(d, sel, value):
    Select(d.find_element(By.CSS_SELECTOR, sel)).select_by_value(value)


def set_value(d, sel, value):
    """A date-time field: typed keys depend on the browser's locale, so the
    value is set and an input event sent, as a user's entry would."""
    d.execute_script(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));"
        "e.dispatchEvent(new Event('change', {bubbles: true}));", sel, value)


def click(d, sel):
    """Click the visible element SEL; found again when an event redrew the
    screen between finding and clicking it."""
    for _ in range(5):
        el = wait(d, visible(sel), sel)
        if not el:
            raise AssertionError(f"no visible {sel}")
        try:
            d.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
            el.click()
            return el
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError(f"{sel} was redrawn five times while being clicked")


def type_in(d, sel, text):
    el = d.find_element(By.CSS_SELECTOR, sel)
    el.clear()
    el.send_keys(text)


def sent_msg_id(d, who):
    res = wait(d, visible("#send-result"), "send result")
    link = css(d, "#send-result a[href^='#/status/']")
    mid = None
    if res and link:
        m = re.search(r"#/status/([0-9a-f]{32})$", link[0].get_attribute("href"))
        mid = m.group(1) if m else None
    check(f"{who}: the page says it was sent and links to its follow-up (msg_id {mid})",
          res is not None and mid is not None, res.text if res else "no #send-result")
    if mid is None:
        raise AssertionError("nothing sent")
    return mid


def label_of(d, control_id):
    """The text of the label of the control with that id (without the
    required mark)."""
    els = d.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']")
    return re.sub(r"\s*\*.*$", "", els[0].text).strip() if els else None


def answered_shown(d, reply_id, who):
    """The message on screen is a query this node replied to: the line
    saying so, linking to the reply's follow-up, and no reply button."""
    line = wait(d, visible("#answered"), "answered line")
    links = css(d, "#answered a")
    check(f"{who}: a line says in Dutch it was answered, linking to the reply's follow-up",
          line is not None and "Uw organisatie heeft deze vraag al beantwoord" in line.text
          and len(links) == 1 and links[0].get_attribute("href").endswith(f"#/status/{reply_id}"),
          line.text if line else "no #answered")
    check(f"{who}: no reply button is offered (the node would refuse a second reply)",
          not css(d, "#answer-button") and not css(d, "#answer-form"))


def reply_outside(city, police):
    """A query from the municipality's node to the police's, replied to on
    the police node's Unix socket (as keten-node reply does): (query, reply)."""
    signal = {"type": "adrescheck", "purpose": "riec-convenant-2024/art-5", "nature": "hard",
              "summary": QUERY_SUMMARY}
    st, _, js, raw = city.unix("POST", "/v1/messages?wait=20000",
                               {"kind": "query", "to": [police.id], "signal": signal})
    ok = st == 201 and isinstance(js, dict) and js.get("state") == "accepted"
    check("the municipality's operator sends a second query to the police (accepted)", ok, f"{st} {raw[:200]!r}")
    if not ok:
        raise AssertionError("second query not sent")
    query = js["msg_id"]
    st = 0
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # until the police node has stored it
        st, _, _, _ = police.unix("GET", f"/v1/inbox/{query}")
        if st == 200:
            break
        time.sleep(0.2)
    check("the police node received the second query", st == 200, str(st))
    st, _, js, raw = police.unix("GET", f"/v1/inbox/{query}")
    check("before its reply, the query's JSON has no reply_msg_id",
          st == 200 and "reply_msg_id" not in js["message"], f"{st} {raw[:300]!r}")
    st, _, js, raw = police.unix("POST", f"/v1/inbox/{query}/reply?wait=20000",
                                 {"kind": "reply", "signal": {"type": "adrescheck",
                                                              "purpose": "riec-convenant-2024/art-5",
                                                              "nature": "hard", "summary": REPLY_SUMMARY}})
    ok = st == 201 and isinstance(js, dict) and js.get("state") == "accepted"
    check("the police's operator replies to it outside the page (POST /v1/inbox/ID/reply on api.sock)",
          ok, f"{st} {raw[:200]!r}")
    if not ok:
        raise AssertionError("no reply sent")
    return query, js["msg_id"]


# ---- the scenario -----------------------------------------------------------

def scenario(args, axe):
    city = Node(args.node[0])
    police = Node(args.node[1])
    tax_id = Node(args.node[2]).id

    clerk_token = city.make_token("clerk", ["read", "send", "ack"])
    analyst_token = police.make_token("analyst", ["read", "send", "ack"])

    # Headers of every answer (the page's and the API's).
    st, hd, _, _ = city.tcp("GET", "/")
    check("GET / answers 200 with text/html", st == 200 and hd.get("content-type", "").startswith("text/html"),
          f"{st} {hd.get('content-type')}")
    check("GET /: Content-Security-Policy is the contract's, without inline script",
          hd.get("content-security-policy") == CSP, hd.get("content-security-policy"))
    check("GET /: X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer",
          hd.get("x-content-type-options") == "nosniff" and hd.get("referrer-policy") == "no-referrer",
          str(hd))
    for name in ("app.js", "i18n.js", "style.css", "favicon.svg"):
        st, hd, _, _ = city.tcp("GET", "/static/" + name)
        check(f"GET /static/{name}: 200 with the CSP header", st == 200
              and hd.get("content-security-policy") == CSP, f"{st} {hd.get('content-security-policy')}")
    st, hd, js, raw = city.tcp("GET", "/v1/inbox")
    check("GET /v1/inbox without credentials: 401 problem+json with WWW-Authenticate: Bearer",
          st == 401 and hd.get("content-type", "").startswith("application/problem+json")
          and hd.get("www-authenticate", "").startswith("Bearer") and isinstance(js, dict)
          and js.get("status") == 401, f"{st} {hd} {raw[:200]!r}")
    check("GET /v1/inbox: Cache-Control: no-store on /v1/", hd.get("cache-control") == "no-store",
          hd.get("cache-control"))
    st, _, _, _ = city.tcp("GET", "/v1/inbox", headers={"Authorization": "Bearer " + clerk_token})
    check("GET /v1/inbox with the clerk's token: 200 (the reject twin of the 401)", st == 200, str(st))

    tmp = tempfile.mkdtemp(prefix="keten-web-")
    clerk = browser(os.path.join(tmp, "clerk"))
    analyst = browser(os.path.join(tmp, "analyst"))
    try:
        run_browsers(args, axe, city, police, tax_id, clerk_token, analyst_token, clerk, analyst)
    finally:
        for d in (clerk, analyst):
            try:
                collect_urls(d)
            except Exception:  # the browser may be gone already
                pass
        check_console(clerk, analyst)
        check_urls(clerk, analyst)
        check_access_logs(city, police)
        clerk.quit()
        analyst.quit()
        # the two browser profiles (cookies, cache of the pages): nothing is
        # left behind in the temporary directory
        shutil.rmtree(tmp, ignore_errors=True)


def run_browsers(args, axe, city, police, tax_id, clerk_token, analyst_token, clerk, analyst):
    # ---- sign in: the wrong token first (the reject twin), then the right one
    clerk.get(city.base + "/")
    collect_urls(clerk)
    check("clerk: the sign-in screen appears", wait(clerk, visible("#login-token"), "login"))
    check("clerk: the page is Dutch by default (html lang=nl, heading Inloggen)",
          clerk.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl" and h1_is(clerk, "Inloggen"))
    axe.run(clerk, "sign in")
    axe.shot(clerk, "login")
    type_in(clerk, "#login-token", "ktn_" + "A" * 43)
    click(clerk, "form.login button[type=submit]")
    err = wait(clerk, visible("#login-token-error"), "login error")
    check("clerk: a wrong token is refused, the reason next to the field (aria-invalid, aria-describedby)",
          err is not None and clerk.find_element(By.CSS_SELECTOR, "#login-token").get_attribute("aria-invalid") == "true"
          and "login-token-error" in clerk.find_element(By.CSS_SELECTOR, "#login-token").get_attribute("aria-describedby"),
          err.text if err else "no error shown")
    check("clerk: focus is on the token field after the refusal",
          clerk.switch_to.active_element.get_attribute("id") == "login-token")
    axe.run(clerk, "sign in, refused")
    login(clerk, city, clerk_token, "clerk")

    cookie = clerk.get_cookie("keten_session")
    check("the session cookie keten_session is HttpOnly and SameSite=Strict",
          cookie is not None and cookie.get("httpOnly") is True and cookie.get("sameSite") == "Strict",
          str(cookie))
    login(analyst, police, analyst_token, "analyst")
    axe.run(analyst, "inbox (empty)")

    # The keyboard: the first Tab reaches the skip link, its focus is
    # visible, and Enter puts the focus on the main content.
    analyst.refresh()  # the session goes on; the focus starts at the top
    check("analyst: a reload keeps the session (the inbox, not the sign-in screen)",
          h1_is(analyst, "Inbox") and not css(analyst, "#login-token"))
    analyst.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    el = analyst.switch_to.active_element
    outline = analyst.execute_script(
        "const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.boxShadow];")
    check("analyst: the first Tab reaches the skip link, with a visible focus outline",
          el.get_attribute("id") == "skip-link" and outline[0] != "none" and outline[1] != "0px",
          f"{el.get_attribute('id')} {outline}")
    el.send_keys(Keys.ENTER)
    check("analyst: the skip link puts the focus on the main content (the fragment keeps the route)",
          analyst.switch_to.active_element.get_attribute("id") == "main"
          and "#main" not in analyst.current_url,
          f"{analyst.switch_to.active_element.get_attribute('id')} {analyst.current_url}")

    # ---- the clerk records a signal
    go(clerk, city, "#/record")
    check("clerk: the record screen opens", h1_is(clerk, "Signaal vastleggen"))
    choose(clerk, "#f-type", "woonfraude")
    labels = [e.text for e in css(clerk, "#fs-to label")]
    check("clerk: the recipients offered are those the policy allows for woonfraude (police, tax, housing)",
          any("Politie Midden-Nederland" in x for x in labels) and any("Belastingdienst" in x for x in labels)
          and any("Woonstad" in x for x in labels) and not any("Gemeente" in x for x in labels), str(labels))
    axe.run(clerk, "record a signal")
    axe.shot(clerk, "record")
    choose(clerk, "#f-purpose", "riec-convenant-2024/art-5")
    police_box = [e for e in css(clerk, "#fs-to input[name=to]") if e.get_attribute("value") == police.id]
    check("clerk: the police node is a recipient to tick", len(police_box) == 1)
    # Check with no recipient and soft information without its grading: the
    # node names both problems in one answer, each said in Dutch next to its
    # field; its English text only as a folded technical detail.
    click(clerk, "#check-button")
    to_err = wait(clerk, visible("#fs-to-error"), "recipients error")
    gr_err = wait(clerk, visible("#fs-grading-error"), "grading error")
    items = css(clerk, "#error-summary li")
    check("clerk: Check with no recipient and no grading names both problems at once, each by its field",
          to_err is not None and gr_err is not None and len(items) == 2,
          f"{to_err.text if to_err else None} / {gr_err.text if gr_err else None} / {len(items)} listed")
    check("clerk: the empty recipient list is said in Dutch (Kies minstens één ontvanger.)",
          to_err is not None and to_err.text.strip() == "Kies minstens één ontvanger.",
          to_err.text if to_err else "")
    check("clerk: the missing grading is said in Dutch",
          gr_err is not None and gr_err.text.startswith("Zachte informatie heeft een beoordeling nodig"),
          gr_err.text if gr_err else "")
    summary = clerk.find_element(By.CSS_SELECTOR, "#error-summary").text
    tech = css(clerk, "#error-summary details.tech")
    check("clerk: the list shows no English text of the node; that is a folded, labelled technical detail",
          "non-empty" not in summary and "required" not in summary and "Ontvangers: Kies minstens" in summary
          and len(tech) == 2 and all("Technisch detail" in x.text for x in tech)
          and any("non-empty array" in x.get_attribute("textContent") for x in tech), repr(summary))
    police_box[0].click()
    type_in(clerk, "#f-summary", SIGNAL_SUMMARY)
    click(clerk, "#f-nature-soft")
    click(clerk, "#f-tlp-2")  # TLP:AMBER
    set_value(clerk, "#f-observed-at", "2026-11-19T10:30")
    type_in(clerk, "#f-observed-by", "handhaver")
    click(clerk, "#subject-add")
    type_in(clerk, "#subject-list [data-part=street]", SIGNAL_STREET)
    type_in(clerk, "#subject-list [data-part=postcode]", SIGNAL_POSTCODE)
    type_in(clerk, "#subject-list [data-part=town]", SIGNAL_TOWN)
    click(clerk, "#subject-add")
    rows = css(clerk, "#subject-list > fieldset")
    Select(rows[1].find_element(By.CSS_SELECTOR, "select")).select_by_value("company")
    rows[1].find_element(By.CSS_SELECTOR, "[data-part=kvk]").send_keys(SIGNAL_COMPANY)
    click(clerk, "#subject-add")
    rows = css(clerk, "#subject-list > fieldset")
    Select(rows[2].find_element(By.CSS_SELECTOR, "select")).select_by_value("person")
    rows[2].find_element(By.CSS_SELECTOR, "[data-part=name]").send_keys(SIGNAL_PERSON)
    # Soft information without its grading: the node says what is wrong.
    click(clerk, "#send-button")
    err = wait(clerk, visible("#fs-grading-error"), "grading error")
    check("clerk: soft information without a grading is refused, the node's reason next to the grading",
          err is not None and err.text.strip() != "", "no error by the grading fields")
    active = clerk.switch_to.active_element.get_attribute("id")
    check("clerk: focus moved to the first field in error (the source's grading)",
          active == "f-grading-source", f"focus on {active}")
    src = clerk.find_element(By.CSS_SELECTOR, "#f-grading-source")
    check("clerk: the field in error has aria-invalid and its error in aria-describedby",
          src.get_attribute("aria-invalid") == "true"
          and "fs-grading-error" in (src.get_attribute("aria-describedby") or ""),
          f"{src.get_attribute('aria-invalid')} {src.get_attribute('aria-describedby')}")
    check("clerk: the error summary at the top lists the problem",
          wait(clerk, visible("#error-summary li"), "summary") is not None)
    check("clerk: nothing was sent (no result, no follow-up link)", not css(clerk, "#send-result"))
    axe.run(clerk, "record a signal, with an error")
    axe.shot(clerk, "record-errors", whole=False)
    choose(clerk, "#f-grading-source", "B")
    choose(clerk, "#f-grading-information", "2")
    # Live updates: the analyst watches the inbox while the clerk sends.
    go(analyst, police, "#/inbox")
    click(clerk, "#send-button")
    signal_id = sent_msg_id(clerk, "clerk")
    check("clerk: the grading error is gone once the grading is given",
          not [e for e in css(clerk, "#fs-grading-error") if e.is_displayed()])

    # ---- the analyst sees it arrive (the event stream, no reload) and opens it
    row = wait(analyst, text_in("#inbox-table tbody tr", SIGNAL_SUMMARY[:40]), "new row")
    check("analyst: the signal appears in the open inbox without reloading (GET /v1/events)", row is not None)
    if row is None:
        analyst.refresh()
        row = wait(analyst, text_in("#inbox-table tbody tr", SIGNAL_SUMMARY[:40]), "row after reload")
    check("analyst: the inbox row shows TLP:AMBER as text, the kind, category and sender",
          row is not None and "TLP:AMBER" in row.text and "signaal" in row.text and "woonfraude" in row.text
          and "Gemeente Diemen" in row.text and "nieuw" in row.text, row.text if row else "no row")
    axe.run(analyst, "inbox")
    axe.shot(analyst, "inbox")
    click(analyst, f"#inbox-table a[href='#/message/{signal_id}']")
    check("analyst: the message opens", h1_is(analyst, "Signaal van Gemeente Diemen"))
    body = analyst.find_element(By.ID, "view").text
    check("analyst: the message shows the summary, the grading in words and the subjects",
          SIGNAL_SUMMARY in body and "meestal betrouwbaar" in body
          and f"{SIGNAL_STREET}, {SIGNAL_POSTCODE}, {SIGNAL_TOWN}" in body and SIGNAL_COMPANY in body,
          body[:500])
    check("analyst: a subject written with markup is shown as its text, and nothing of it ran",
          f"persoon: {SIGNAL_PERSON}" in body
          and analyst.execute_script("return window.__ketenXss === undefined"
                                     " && document.querySelectorAll('#view img').length === 0"),
          body[:500])
    check("analyst: the address bar holds only the view and the msg_id",
          analyst.current_url.endswith(f"/#/message/{signal_id}"), analyst.current_url)
    axe.run(analyst, "message")
    axe.shot(analyst, "message")
    click(analyst, "#ack-button")
    ok = wait(analyst, text_in("#view .notice", "Afgehandeld op"), "ack notice")
    check("analyst: acknowledging says when it was handled, the button is gone",
          ok is not None and not css(analyst, "#ack-button"))
    st, _, js, raw = police.tcp("POST", f"/v1/inbox/{signal_id}/ack",
                                headers={"Authorization": "Bearer " + analyst_token})
    check("a second acknowledgement is refused: 409 problem with handled_at",
          st == 409 and isinstance(js, dict) and js.get("handled_at"), f"{st} {raw[:200]!r}")
    # Feedback on drugs, which the agreement does not allow: the check says
    # so in Dutch, marks no field (the form has no recipients) and keeps the
    # node's English text as a labelled technical detail.
    click(analyst, "#answer-button")
    wait(analyst, visible("#answer-form #signal-form"), "form")
    choose(analyst, "#answer-form #f-type", "drugs")
    click(analyst, "#answer-form #check-button")
    box = wait(analyst, text_in("#answer-form #error-summary", "convenant"), "policy problem")
    text = box.text if box else ""
    check("analyst: feedback the agreement refuses is said in Dutch, naming the signal's sender",
          "Het convenant staat niet toe deze terugkoppeling" in text and "afzender van het signaal" in text
          and "sharing policy" not in text, text)
    check("analyst: the refusal does not ask to correct a marked field, and no field is marked",
          box is not None and "gemarkeerde" not in text and "Er is 1 probleem" in text
          and not css(analyst, "#answer-form [aria-invalid]"), text)
    tech = css(analyst, "#answer-form #error-summary details.tech")
    check("analyst: the node's own text is kept as a labelled technical detail",
          len(tech) == 1 and "Technisch detail" in tech[0].text
          and "sharing policy refuses" in tech[0].get_attribute("textContent"),
          tech[0].get_attribute("textContent") if tech else "none")
    axe.run(analyst, "feedback form, refused by the agreement")
    # The twin in English: the same refusal in English words.
    go(analyst, police, "#/inbox")
    h1_is(analyst, "Inbox")
    Select(analyst.find_element(By.ID, "lang-select")).select_by_value("en")
    wait(analyst, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
    go(analyst, police, f"#/message/{signal_id}")
    click(analyst, "#answer-button")
    wait(analyst, visible("#answer-form #signal-form"), "form")
    choose(analyst, "#answer-form #f-type", "drugs")
    click(analyst, "#answer-form #check-button")
    box = wait(analyst, text_in("#answer-form #error-summary", "agreement"), "policy problem in English")
    text = box.text if box else ""
    check("analyst, in English: the same refusal is said in English",
          "The agreement does not allow sending this feedback" in text and "convenant" not in text
          and "There is 1 problem; the message cannot be sent like this." in text, text)
    # Back to Dutch with the feedback form open: it stays open with what was
    # chosen, its texts and the refusal in Dutch.
    type_in(analyst, "#answer-form #f-summary", FEEDBACK_SUMMARY)
    Select(analyst.find_element(By.ID, "lang-select")).select_by_value("nl")
    box = wait(analyst, text_in("#answer-form #error-summary", "convenant"), "policy problem in Dutch again")
    check("analyst: switching to Dutch with the feedback form open keeps it, its choices and the typed text",
          box is not None and h1_is(analyst, "Signaal van Gemeente Diemen")
          and analyst.find_element(By.CSS_SELECTOR, "#answer-form #f-type").get_attribute("value") == "drugs"
          and analyst.find_element(By.CSS_SELECTOR, "#answer-form #f-summary").get_attribute("value") == FEEDBACK_SUMMARY,
          box.text if box else "no Dutch refusal in the open form")
    form_text = analyst.find_element(By.ID, "answer-form").text
    check("analyst: the open feedback form and its refusal are in Dutch now (labels, buttons, the problem)",
          "Terugkoppeling op dit signaal" in form_text and "Samenvatting" in form_text
          and "Het convenant staat niet toe deze terugkoppeling" in form_text
          and "Feedback on this signal" not in form_text and "agreement" not in form_text
          and analyst.find_element(By.CSS_SELECTOR, "#answer-form #check-button").text == "Controleren"
          and analyst.find_element(By.ID, "answer-button").get_attribute("aria-expanded") == "true",
          form_text[:400])
    go(analyst, police, "#/inbox")
    h1_is(analyst, "Inbox")
    Select(analyst.find_element(By.ID, "lang-select")).select_by_value("nl")
    wait(analyst, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl")
    go(analyst, police, f"#/message/{signal_id}")
    h1_is(analyst, "Signaal van Gemeente Diemen")
    click(analyst, "#answer-button")
    check("analyst: the feedback form opens", wait(analyst, visible("#answer-form #signal-form"), "form"))
    check("analyst: the feedback form has no recipient field (it goes to the sender)",
          not css(analyst, "#answer-form #fs-to"))
    type_in(analyst, "#answer-form #f-summary", FEEDBACK_SUMMARY)
    click(analyst, "#answer-form #f-tlp-0")  # TLP:CLEAR
    axe.run(analyst, "feedback form")
    click(analyst, "#answer-form #send-button")
    sent_msg_id(analyst, "analyst (feedback)")

    # ---- the clerk follows the signal: receipted by the police, feedback in
    click(clerk, "#send-result a")
    check("clerk: the follow-up opens", h1_is(clerk, "Signaal over woonfraude"))
    row = wait(clerk, recipient_state("Politie Midden-Nederland", "ontvangen"), "receipted")
    check("clerk: the follow-up shows the police received it (its receipt)", row is not None)
    fb = wait(clerk, text_in("#reply-list a", "Terugkoppeling van Politie"), "feedback")
    check("clerk: the follow-up lists the police's feedback", fb is not None)
    axe.run(clerk, "follow-up of a signal")
    if fb is not None:
        click(clerk, "#reply-list a")
        check("clerk: the feedback opens and shows its text", h1_is(clerk, "Terugkoppeling van Politie")
              and FEEDBACK_SUMMARY in clerk.find_element(By.ID, "view").text)

    # ---- a query to police and tax; the police replies, tax does not
    go(clerk, city, "#/query")
    check("clerk: the query screen opens", h1_is(clerk, "Vraag versturen"))
    choose(clerk, "#f-type", "adrescheck")
    choose(clerk, "#f-purpose", "riec-convenant-2024/art-5")
    click(clerk, "#check-button")
    err = wait(clerk, visible("#fs-to-error"), "no recipient")
    check("clerk: a query to no one is refused by the check, the reason by the recipients",
          err is not None and err.text.strip() != ""
          and clerk.switch_to.active_element.get_attribute("name") == "to",
          err.text if err else "no error by the recipients")
    for e in css(clerk, "#fs-to input[name=to]"):
        if e.get_attribute("value") in (police.id, tax_id):
            e.click()
    type_in(clerk, "#f-summary", QUERY_SUMMARY)
    click(clerk, "#f-tlp-2")
    click(clerk, "#subject-add")
    type_in(clerk, "#subject-list [data-part=street]", QUERY_STREET)
    type_in(clerk, "#subject-list [data-part=town]", SIGNAL_TOWN)
    axe.run(clerk, "send a query")
    axe.shot(clerk, "query")
    click(clerk, "#check-button")
    check("clerk: Check says the query is in order (POST /v1/messages/validate)",
          wait(clerk, text_in("#form-result", "in orde"), "check ok") is not None)
    click(clerk, "#send-button")
    query_id = sent_msg_id(clerk, "clerk (query)")

    go(analyst, police, "#/inbox")
    row = wait(analyst, text_in("#inbox-table tbody tr", QUERY_SUMMARY[:30]), "query row")
    check("analyst: the query is in the inbox", row is not None)
    go(analyst, police, f"#/message/{query_id}")
    check("analyst: the query opens", h1_is(analyst, "Vraag van Gemeente Diemen"))
    btn = wait(analyst, visible("#answer-button"), "reply button")
    check("analyst: a query not answered yet offers Beantwoorden, and no line saying it was answered",
          btn is not None and btn.text == "Beantwoorden" and not css(analyst, "#answered"),
          btn.text if btn else "no #answer-button")
    click(analyst, "#answer-button")
    check("analyst: the reply form repeats the query's subject",
          wait(analyst, lambda d: any(QUERY_STREET in (e.get_attribute("value") or "")
                                      for e in d.find_elements(By.CSS_SELECTOR, "#answer-form [data-part]"))) is not None)
    type_in(analyst, "#answer-form #f-summary", REPLY_SUMMARY)
    click(analyst, "#answer-form #send-button")
    reply_id = sent_msg_id(analyst, "analyst (reply)")
    st, _, js, raw = police.tcp("POST", f"/v1/inbox/{query_id}/reply",
                                {"kind": "reply", "signal": {"type": "adrescheck",
                                                             "purpose": "riec-convenant-2024/art-5",
                                                             "nature": "hard"}},
                                headers={"Authorization": "Bearer " + analyst_token})
    check("a second reply to the same query is refused: 409", st == 409, f"{st} {raw[:200]!r}")
    # Opened again, the query says it was answered (linking to the reply's
    # follow-up) instead of offering a second reply that would be refused.
    go(analyst, police, "#/inbox")
    h1_is(analyst, "Inbox")
    go(analyst, police, f"#/message/{query_id}")
    answered_shown(analyst, reply_id, "analyst: the query replied to in the page")
    # Another query, replied to outside the page: on the police node's own
    # socket, the request keten-node reply makes. The page knows all the same.
    query2, reply2 = reply_outside(city, police)
    go(analyst, police, f"#/message/{query2}")
    check("analyst: the query replied to with keten-node reply opens", h1_is(analyst, "Vraag van Gemeente Diemen"))
    answered_shown(analyst, reply2, "analyst: the query replied to outside the page")
    axe.run(analyst, "a query already answered")
    Select(analyst.find_element(By.ID, "lang-select")).select_by_value("en")
    line = wait(analyst, text_in("#answered", "already replied"), "answered line in English")
    check("analyst, in English: the answered line is in English, still with no reply button",
          line is not None and "Your organisation has already replied to this query" in line.text
          and "See the reply" in line.text and not css(analyst, "#answer-button"),
          line.text if line else "no English #answered")
    Select(analyst.find_element(By.ID, "lang-select")).select_by_value("nl")
    wait(analyst, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl")
    link = wait(analyst, visible("#answered a"), "link to the reply")
    if link is not None:
        link.click()
    check("analyst: the answered line's link opens the reply's follow-up (an answer about adrescheck)",
          link is not None and h1_is(analyst, "Antwoord over adrescheck")
          and analyst.current_url.endswith(f"#/status/{reply2}"), analyst.current_url)

    go(clerk, city, f"#/status/{query_id}")
    check("clerk: the query's follow-up opens", h1_is(clerk, "Vraag over adrescheck"))
    rep = wait(clerk, text_in("#reply-list a", "Antwoord van Politie"), "reply listed")
    check("clerk: the follow-up lists the police's reply", rep is not None)
    waiting = wait(clerk, text_in("#view p", "Nog niet beantwoord door"), "not replied")
    check("clerk: the follow-up names the partner that has not replied (tax)",
          waiting is not None and "Belastingdienst" in waiting.text and "Politie" not in waiting.text,
          waiting.text if waiting else "")
    trow = wait(clerk, text_in("#recipient-table tbody tr", "Belastingdienst"), "tax row")
    check("clerk: the tax row says not replied", trow is not None and trow.text.rstrip().endswith("nee"),
          trow.text if trow else "")
    axe.run(clerk, "follow-up of a query")
    axe.shot(clerk, "follow-up")
    go(clerk, city, "#/sent")
    check("clerk: the sent list opens", h1_is(clerk, "Verzonden berichten"))
    check("clerk: the sent list holds the signal and the query",
          wait(clerk, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sent-table tbody tr")) >= 2) is not None)
    axe.run(clerk, "sent")
    axe.shot(clerk, "sent")

    # ---- CSRF: the browser's cookie alone is not enough for a change
    cookie = "keten_session=" + clerk.get_cookie("keten_session")["value"]
    st, _, sess, raw = city.tcp("GET", "/v1/session", headers={"Cookie": cookie})
    check("GET /v1/session with the cookie: 200 with actor token:clerk and a csrf_token",
          st == 200 and isinstance(sess, dict) and sess.get("actor") == "token:clerk" and sess.get("csrf_token"),
          f"{st} {raw[:200]!r}")
    csrf = (sess or {}).get("csrf_token", "")
    probe = {"for": "send", "kind": "signal", "to": [police.id],
             "signal": {"type": "woonfraude", "purpose": "riec-convenant-2024/art-5", "nature": "hard"}}
    host = f"127.0.0.1:{city.port}"
    st, hd, js, raw = city.tcp("POST", "/v1/messages/validate", probe, {"Cookie": cookie})
    check("a POST with the session cookie but no X-CSRF-Token is refused: 403 problem+json",
          st == 403 and hd.get("content-type", "").startswith("application/problem+json"), f"{st} {raw[:200]!r}")
    st, _, js, raw = city.tcp("POST", "/v1/messages/validate", probe, {"Cookie": cookie, "X-CSRF-Token": csrf[:-1] + ("A" if csrf[-1:] != "A" else "B")})
    check("a POST with a wrong X-CSRF-Token is refused: 403", st == 403, f"{st} {raw[:200]!r}")
    st, _, js, raw = city.tcp("POST", "/v1/messages/validate", probe,
                              {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    check("a POST with the right X-CSRF-Token from another Origin is refused: 403", st == 403, f"{st} {raw[:200]!r}")
    st, _, js, raw = city.tcp("POST", "/v1/messages/validate", probe,
                              {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://" + host})
    check("the same POST with the right X-CSRF-Token and Origin is answered: 200 valid",
          st == 200 and isinstance(js, dict) and js.get("valid") is True, f"{st} {raw[:300]!r}")

    # ---- language
    clerk.find_element(By.ID, "lang-select")
    Select(clerk.find_element(By.ID, "lang-select")).select_by_value("en")
    check("clerk: English is selectable (html lang=en, the heading in English)",
          wait(clerk, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en") is not None
          and h1_is(clerk, "Sent messages"))
    axe.run(clerk, "sent, in English")
    # The twin of the Dutch check above: in English, English words.
    go(clerk, city, "#/record")
    h1_is(clerk, "Record a signal")
    choose(clerk, "#f-type", "woonfraude")
    choose(clerk, "#f-purpose", "riec-convenant-2024/art-5")
    click(clerk, "#check-button")
    to_err = wait(clerk, visible("#fs-to-error"), "recipients error")
    gr_err = wait(clerk, visible("#fs-grading-error"), "grading error")
    check("clerk, in English: no recipient and no grading are said in English",
          to_err is not None and to_err.text.strip() == "Choose at least one recipient."
          and gr_err is not None and gr_err.text.startswith("Soft information needs a grading")
          and "Technical detail" in clerk.find_element(By.CSS_SELECTOR, "#error-summary").text,
          f"{to_err.text if to_err else None} / {gr_err.text if gr_err else None}")
    # The language switched with the form open: its labels follow, what was
    # typed and chosen stays (and so do the problems, in the new language).
    type_in(clerk, "#f-summary", SIGNAL_SUMMARY)
    click(clerk, "#subject-add")
    type_in(clerk, "#subject-list [data-part=street]", SIGNAL_STREET)
    check("clerk, in English: the record form's labels are English before the switch",
          label_of(clerk, "f-summary") == "Summary" and label_of(clerk, "f-type").startswith("Category"))
    Select(clerk.find_element(By.ID, "lang-select")).select_by_value("nl")
    check("clerk: switching to Dutch with the record form open redraws its heading in Dutch",
          h1_is(clerk, "Signaal vastleggen"))
    to_err = wait(clerk, text_in("#fs-to-error", "Kies minstens"), "recipients error in Dutch")
    check("clerk: the form's labels, buttons and subject row are Dutch now",
          label_of(clerk, "f-summary") == "Samenvatting" and label_of(clerk, "f-type").startswith("Categorie")
          and clerk.find_element(By.CSS_SELECTOR, "#check-button").text == "Controleren"
          and clerk.find_element(By.CSS_SELECTOR, "#subject-list legend").text == "Onderwerp 1"
          and label_of(clerk, "f-nature-soft") == "Zacht: een waarneming",
          f"{label_of(clerk, 'f-summary')} / {label_of(clerk, 'f-type')} / "
          f"{clerk.find_element(By.CSS_SELECTOR, '#check-button').text}")
    check("clerk: what was typed and chosen stays (summary, category, purpose, the subject's street)",
          clerk.find_element(By.CSS_SELECTOR, "#f-summary").get_attribute("value") == SIGNAL_SUMMARY
          and clerk.find_element(By.CSS_SELECTOR, "#f-type").get_attribute("value") == "woonfraude"
          and clerk.find_element(By.CSS_SELECTOR, "#f-purpose").get_attribute("value") == "riec-convenant-2024/art-5"
          and clerk.find_element(By.CSS_SELECTOR, "#subject-list [data-part=street]").get_attribute("value")
          == SIGNAL_STREET, clerk.find_element(By.CSS_SELECTOR, "#f-summary").get_attribute("value"))
    check("clerk: the problems shown stay, now in Dutch, each still by its field",
          to_err is not None and to_err.text.strip() == "Kies minstens één ontvanger."
          and clerk.find_element(By.CSS_SELECTOR, "#fs-grading-error").text.startswith("Zachte informatie heeft")
          and "Ontvangers: Kies minstens" in clerk.find_element(By.CSS_SELECTOR, "#error-summary").text
          and "Technisch detail" in clerk.find_element(By.CSS_SELECTOR, "#error-summary").text,
          clerk.find_element(By.CSS_SELECTOR, "#error-summary").text)
    axe.run(clerk, "record a signal, language switched with the form open")
    Select(clerk.find_element(By.ID, "lang-select")).select_by_value("en")
    check("clerk: and back to English: the labels follow again, the typed summary still there",
          wait(clerk, lambda d: label_of(d, "f-summary") == "Summary") is not None
          and clerk.find_element(By.CSS_SELECTOR, "#f-summary").get_attribute("value") == SIGNAL_SUMMARY,
          label_of(clerk, "f-summary"))
    go(clerk, city, "#/sent")
    h1_is(clerk, "Sent messages")
    keys = clerk.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/i18n.js').then(m => done([Object.keys(m.STRINGS.nl).sort(),"
        " Object.keys(m.STRINGS.en).sort()])).catch(e => done(String(e)));")
    check("every text of the page exists in Dutch and in English",
          isinstance(keys, list) and keys[0] == keys[1] and len(keys[0]) > 100,
          str(keys)[:300])
    Select(clerk.find_element(By.ID, "lang-select")).select_by_value("nl")

    # ---- a session ended elsewhere is shown as ended
    acookie = "keten_session=" + analyst.get_cookie("keten_session")["value"]
    st, _, asess, _ = police.tcp("GET", "/v1/session", headers={"Cookie": acookie})
    st, _, _, raw = police.tcp("DELETE", "/v1/session",
                               headers={"Cookie": acookie, "X-CSRF-Token": (asess or {}).get("csrf_token", "")})
    check("DELETE /v1/session with the cookie and its X-CSRF-Token: 204", st == 204, f"{st} {raw[:200]!r}")
    go(analyst, police, "#/sent")
    ended = wait(analyst, text_in("#view .notice", "sessie is beëindigd"), "ended notice")
    check("analyst: the page says the session has ended, and when, and asks to sign in again",
          ended is not None and css(analyst, "#login-token"), ended.text if ended else "")
    axe.shot(analyst, "session-ended")

    # ---- logout ends the session
    click(clerk, "#logout")
    out = wait(clerk, text_in("#view .notice", "uitgelogd"), "logged out")
    check("clerk: logging out shows the sign-in screen saying so", out is not None and css(clerk, "#login-token"))
    st, _, _, _ = city.tcp("GET", "/v1/session", headers={"Cookie": cookie})
    check("after logout the old cookie gets 401 from GET /v1/session", st == 401, str(st))
    st, _, _, _ = city.tcp("GET", "/v1/inbox", headers={"Cookie": cookie})
    check("after logout the old cookie gets 401 from GET /v1/inbox", st == 401, str(st))
    axe.run(clerk, "signed out")

    # ---- a token that may only read: the page offers no change, the API
    # refuses one (403), the clerk's token is allowed the same (the twin)
    reader_token = city.make_token("reader", ["read"])
    type_in(clerk, "#login-token", reader_token)
    click(clerk, "form.login button[type=submit]")
    check("reader: signed in with a read-only token (the menu appears)",
          wait(clerk, visible("#nav a[data-view=inbox]")) is not None)
    go(clerk, city, "#/inbox")
    check("reader: the inbox opens", h1_is(clerk, "Inbox"))
    shown = [a.get_attribute("data-view") for a in css(clerk, "#nav a") if a.is_displayed()]
    check("reader: the menu offers only the inbox and the sent messages (no record, no query)",
          shown == ["inbox", "sent"], str(shown))
    click(clerk, "#inbox-table a")
    check("reader: a message opens", wait(clerk, visible("#view dl.facts")) is not None)
    check("reader: the message offers no acknowledgement, reply or feedback",
          not css(clerk, "#ack-button") and not css(clerk, "#answer-button"))
    probe = {"for": "send", "kind": "signal", "to": [police.id],
             "signal": {"type": "woonfraude", "purpose": "riec-convenant-2024/art-5", "nature": "hard"}}
    st, _, js, raw = city.tcp("POST", "/v1/messages/validate", probe,
                              {"Authorization": "Bearer " + reader_token})
    check("a read-only token's check of a send is refused: 403 (scope send missing)", st == 403,
          f"{st} {raw[:200]!r}")
    st, _, js, raw = city.tcp("POST", "/v1/messages/validate", probe,
                              {"Authorization": "Bearer " + clerk_token})
    check("the clerk's token (scope send) gets the same check answered: 200", st == 200, f"{st} {raw[:200]!r}")
    click(clerk, "#logout")
    check("reader: logged out", wait(clerk, text_in("#view .notice", "uitgelogd")) is not None)


def check_console(*drivers):
    """No script error and no Content-Security-Policy violation in the
    browsers' consoles (refused requests, logged by the network, are
    expected: 401 before signing in, 403 and 409 on purpose)."""
    bad = []
    for d in drivers:
        try:
            entries = d.get_log("browser")
        except Exception as e:  # the browser may be gone
            bad.append(f"console not readable: {e}")
            continue
        for e in entries:
            msg = e.get("message", "")
            if "Content Security Policy" in msg or (e.get("level") == "SEVERE" and e.get("source") != "network"):
                bad.append(msg)
    check("no script error and no Content-Security-Policy violation in the browsers' consoles",
          not bad, str(bad[:5]))


def check_urls(*drivers):
    urls = []
    for d in drivers:
        urls += d.visited + d.history
    check(f"the browsers' requests were recorded ({len(urls)} URLs)", len(urls) > 20)
    bad = []
    for u in urls:
        plain = urllib.parse.unquote_plus(u)
        for s in SECRETS:
            if s.lower() in plain.lower():
                bad.append((s, u))
    check("no message content or subject in any URL the browsers requested or showed", not bad,
          str(bad[:5]))
    hosts = {urllib.parse.urlsplit(u).hostname for u in urls if u.startswith("http")}
    check("the page fetched nothing from another host", hosts <= {"127.0.0.1"}, str(hosts))


def check_access_logs(*nodes):
    for n in nodes:
        path = os.path.join(n.home, "access.log")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            check(f"{n.id}: the access log can be read", False, str(e))
            continue
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        check(f"{n.id}: the access log has a line per request, with actor, via, action, result",
              len(lines) > 5 and all({"time", "actor", "via", "peer", "action", "object", "result", "status"}
                                     <= set(x) for x in lines), text[:300])
        hits = [s for s in SECRETS if s.lower() in text.lower()]
        check(f"{n.id}: no message content or subject in the access log", not hits, str(hits))
    city = nodes[0]
    with open(os.path.join(city.home, "access.log"), encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()]
    check(f"{city.id}: the access log names the clerk's sends (actor token:clerk, via tcp, result ok)",
          any(x["actor"] == "token:clerk" and x["via"] == "tcp" and x["action"] == "send" and x["result"] == "ok"
              for x in lines))
    check(f"{city.id}: the access log has the refused CSRF requests (result denied, status 403)",
          any(x["result"] == "denied" and x["status"] == 403 for x in lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--axe", required=True, help="axe.min.js of axe-core")
    ap.add_argument("--node", action="append", required=True,
                    help="ID:HOME:PORT, three times: the municipality, the police, the tax node")
    ap.add_argument("--screenshots", default=os.environ.get("KETEN_WEB_SCREENSHOTS") or None)
    args = ap.parse_args()
    if len(args.node) != 3:
        ap.error("--node three times")
    axe = Axe(args.axe, args.screenshots)
    try:
        scenario(args, axe)
    except SystemExit:
        raise
    except Exception:  # a step that could not run is a failure, with its trace
        check("the scenario ran to its end", False, traceback.format_exc().replace("\n", " | "))
    n_fail = RESULTS.count(False)
    print(f"# {len(RESULTS)} checks, {n_fail} failed", flush=True)
    sys.exit(0 if n_fail == 0 and RESULTS else 1)


if __name__ == "__main__":
    main()
