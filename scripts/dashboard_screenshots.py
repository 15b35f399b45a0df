"""Screenshots of the dashboard from the real page (see
scripts/dashboard-screenshots.sh): the demo's services running, one service
deploying, one failing. Starts its own stack (etcd, manager with command
tasks, subscriber, deployer) on free ports and drives headless chromium."""

import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "deployer", "tests", "browser"))

from selenium.webdriver.common.by import By  # noqa: E402

from conftest import new_driver  # noqa: E402
from stack import Stack, eventually, http  # noqa: E402

OUT = os.environ.get("MDO_SCREENSHOTS_DIR", os.path.join(ROOT, "docs"))

# The demo's three services, as command tasks (no image can be pulled here):
# HTTP servers with an HTTP health check on their named port.
DEMO = """deploy:
  ingestor:
    cmd: "exec busybox httpd -f -p $PORT0 -h WWW"
    labels: [demo]
    ports: {api: 8000}
    instances: 3
    health_checks: [{protocol: HTTP, port: api, path: /, interval_seconds: 1, grace_period_seconds: 1, timeout_seconds: 1}]
  proxy:
    cmd: "exec busybox httpd -f -p $PORT0 -h WWW"
    labels: [demo]
    ports: {http: 8080}
    health_checks: [{protocol: HTTP, port: http, path: /, interval_seconds: 1, grace_period_seconds: 1, timeout_seconds: 1}]
  lb:
    cmd: "exec busybox httpd -f -p $PORT0 -h WWW"
    labels: [demo]
    ports: {http: 8090, stats: 8404}
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
    stack = Stack().start()
    browser = None
    try:
        url = stack.deployer(port=stack.deployer_port)
        www = os.path.join(stack.dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("ok\n")
        demo = DEMO.replace("WWW", www)
        status, report = http("POST", url + "/deploy?wait=true", demo, content_type="application/yaml")
        assert status == 200, report
        eventually("the demo's 5 records", lambda: len(stack.records()) >= 5, timeout=60)
        browser = new_driver(1500, 950)
        browser.get(url + "/")
        eventually("live", lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live")
        for app in ("/demo/ingestor", "/demo/proxy", "/demo/lb"):
            eventually(f"{app} green", lambda app=app: colour(browser, app) == "green", timeout=60)
        browser.find_element(By.CSS_SELECTOR, "tr.svc[data-app='/demo/ingestor'] a.open").click()
        eventually("the ingestor's tasks", lambda: browser.find_elements(By.CSS_SELECTOR, "tr.detail-row tr.task"))
        time.sleep(0.5)  # let the log and record cells paint before the picture (not a synchronisation)
        shot(browser, "dashboard-running.png")

        # One service deploying: a rolling update whose new tasks answer
        # their health check only after 40 s.
        slow = DEMO.replace('cmd: "exec busybox httpd -f -p $PORT0 -h WWW"\n    labels: [demo]\n    ports: {http: 8080}',
                            'cmd: "sleep 40; exec busybox httpd -f -p $PORT0 -h WWW"\n    labels: [demo]\n    ports: {http: 8080}')
        slow = slow.replace("WWW", www)
        assert slow != demo
        status, report = http("POST", url + "/deploy", slow, content_type="application/yaml")
        assert status == 200, report
        browser.get(url + "/")
        eventually("proxy deploying", lambda: colour(browser, "/demo/proxy") == "amber", timeout=20)
        eventually("the deployment's steps", lambda: browser.find_elements(By.CSS_SELECTOR, "#deployments tr.deployment"))
        time.sleep(2)  # a few events in the strip
        shot(browser, "dashboard-deploying.png")

        # One service failing: its health check fails; another crashes and
        # waits in the queue with its backoff.
        app = {"id": "/demo/reports", "cmd": "sleep 3600", "instances": 2, "cpus": 0.01, "mem": 16,
               "labels": {"SERVICE_NAME": "reports", "SERVICE_GROUP": "demo"},
               "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f /nonexistent/ready"},
                                 "gracePeriodSeconds": 0, "intervalSeconds": 1, "timeoutSeconds": 2,
                                 "maxConsecutiveFailures": 0}]}
        assert http("POST", stack.manager + "/v2/apps", app)[0] == 201
        crash = {"id": "/demo/billing", "cmd": "echo 'billing: cannot reach the database'; exit 1",
                 "instances": 1, "cpus": 0.01, "mem": 16, "backoffSeconds": 30,
                 "labels": {"SERVICE_NAME": "billing", "SERVICE_GROUP": "demo"}}
        assert http("POST", stack.manager + "/v2/apps", crash)[0] == 201
        browser.get(url + "/")
        eventually("reports red", lambda: colour(browser, "/demo/reports") == "red", timeout=30)
        eventually("billing red (queue backoff)", lambda: colour(browser, "/demo/billing") == "red", timeout=30)
        browser.find_element(By.CSS_SELECTOR, "tr.svc[data-app='/demo/reports'] a.open").click()
        eventually("the failing checks", lambda: "failing" in browser.find_element(
            By.CSS_SELECTOR, "tr.detail-row table.tasks").text, timeout=10)
        time.sleep(0.5)
        shot(browser, "dashboard-failing.png")
    finally:
        if browser:
            browser.quit()
        stack.stop()


if __name__ == "__main__":
    main()
