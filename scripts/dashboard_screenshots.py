"""Screenshots of the dashboard from the real page against the real demo (see
scripts/dashboard-screenshots.sh, which brings up `cluster-setup up --demo`
and passes the deployer's URL in MDO_SCREENSHOTS_DEPLOYER): the demo's
services running, one service deploying, one failing. Drives headless
chromium."""

import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "deployer", "tests", "browser"))

from selenium.webdriver.common.by import By  # noqa: E402

from conftest import new_driver  # noqa: E402
from stack import eventually, http  # noqa: E402

OUT = os.environ.get("MDO_SCREENSHOTS_DIR", os.path.join(ROOT, "docs"))

# A rolling update of the demo's proxy whose new container answers its
# health check only after 40 s (the proxy's own command, started late).
SLOW_PROXY = """deploy:
  proxy:
    image: mdo/example:latest
    cmd: "sleep 40; exec watcher --methods /app/watch_methods.py -- python3 /app/proxy.py"
    labels: [demo]
    ports: {http: 8080}
    environment:
      WATCHES: ingestor
    instances: 1
    cpus: 0.1
    mem: 64
    health_checks: [{protocol: HTTP, port: http, path: /, interval_seconds: 2, grace_period_seconds: 90, timeout_seconds: 2}]
"""

# Two services of the example image that fail: one whose health check asks
# for a page its server does not have, one that exits at once and waits in
# the launch queue with its backoff.
FAILING = """deploy:
  reports:
    image: mdo/example:latest
    cmd: "python3 -m http.server 8000"
    labels: [demo]
    ports: {http: 8000}
    instances: 2
    cpus: 0.1
    mem: 64
    health_checks: [{protocol: HTTP, port: http, path: /ready, interval_seconds: 1, grace_period_seconds: 1, timeout_seconds: 1}]
  billing:
    image: mdo/example:latest
    cmd: "echo 'billing: cannot reach the database'; exit 1"
    labels: [demo]
    instances: 1
    cpus: 0.1
    mem: 64
    marathon: {backoffSeconds: 30}
"""


def colour(browser, app):
    for r in browser.find_elements(By.CSS_SELECTOR, "#services tr.svc"):
        if r.get_attribute("data-app") == app:
            return r.get_attribute("data-colour")
    return None


def shot(browser, name):
    path = os.path.join(OUT, name)
    browser.save_screenshot(path)
    print("wrote", os.path.relpath(path, ROOT))


def main():
    url = os.environ["MDO_SCREENSHOTS_DEPLOYER"].rstrip("/")
    browser = new_driver(1500, 950)
    try:
        browser.get(url + "/")
        eventually("live", lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live")
        for app in ("/demo/ingestor", "/demo/proxy", "/demo/lb"):
            eventually(f"{app} green", lambda app=app: colour(browser, app) == "green", timeout=120)
        # Every endpoint from the registry (none marked "not in registry").
        eventually("the registry's endpoints", lambda: not browser.find_elements(
            By.CSS_SELECTOR, "#services .unregistered"), timeout=60)
        browser.find_element(By.CSS_SELECTOR, "tr.svc[data-app='/demo/ingestor'] a.open").click()
        eventually("the ingestor's tasks", lambda: browser.find_elements(By.CSS_SELECTOR, "tr.detail-row tr.task"))
        time.sleep(0.5)  # let the log and record cells paint before the picture (not a synchronisation)
        shot(browser, "dashboard-running.png")

        status, report = http("POST", url + "/deploy", SLOW_PROXY, content_type="application/yaml")
        assert status == 200, report
        browser.get(url + "/")
        eventually("proxy deploying", lambda: colour(browser, "/demo/proxy") == "amber", timeout=30)
        eventually("the deployment's steps", lambda: browser.find_elements(By.CSS_SELECTOR, "#deployments tr.deployment"))
        time.sleep(2)  # a few events in the strip
        shot(browser, "dashboard-deploying.png")

        status, report = http("POST", url + "/deploy", FAILING, content_type="application/yaml")
        assert status == 200, report
        browser.get(url + "/")
        eventually("reports red", lambda: colour(browser, "/demo/reports") == "red", timeout=90)
        eventually("billing red (queue backoff)", lambda: colour(browser, "/demo/billing") == "red", timeout=90)
        browser.find_element(By.CSS_SELECTOR, "tr.svc[data-app='/demo/reports'] a.open").click()
        eventually("the failing checks", lambda: "failing" in browser.find_element(
            By.CSS_SELECTOR, "tr.detail-row table.tasks").text, timeout=30)
        time.sleep(0.5)
        shot(browser, "dashboard-failing.png")
    finally:
        browser.quit()


if __name__ == "__main__":
    main()
