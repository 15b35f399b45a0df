"""The dashboard in a real browser (headless chromium) against the real
stack: etcd, the manager with command tasks, the subscriber, deployers."""

import os
import tempfile
import urllib.request

from selenium.webdriver.common.by import By

from conftest import TOKEN
from stack import eventually, http

WEB = """deploy:
  web:
    cmd: "exec busybox httpd -f -p $PORT0 -h /tmp"
    labels: [dash]
    ports: {http: 8000}
    instances: 1
"""


def row(browser, app_id):
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#services tr.svc")
            if r.get_attribute("data-app") == app_id]
    return rows[0] if rows else None


def open_row(browser, app_id):
    """Opens a service's details. The page re-renders its rows on live
    events, so a row found a moment ago may be replaced before the click
    (a stale element): find it and click again until the click lands."""
    def click():
        row(browser, app_id).find_element(By.CSS_SELECTOR, "a.open").click()
        return True
    eventually(f"a click on {app_id}'s row", click, timeout=10)


def cell(browser, app_id, cls):
    r = row(browser, app_id)
    return r.find_element(By.CSS_SELECTOR, "td." + cls).text if r else None


def deploy(stack, doc, url=None):
    status, report = http("POST", (url or stack.url) + "/deploy?wait=true", doc, content_type="application/yaml")
    assert status == 200, report
    return report


def record_of(stack, app_id, n=1):
    def found():
        recs = [r for r in stack.records() if r["app_id"] == app_id]
        return recs if len(recs) >= n else None
    return eventually(f"{n} registry record(s) of {app_id}", found, timeout=30)


def live_state(browser):
    return browser.find_element(By.ID, "live").get_attribute("data-state")


def open_page(browser, url):
    browser.get(url + "/")
    eventually(lambda: "the page is live (now: %s)" % browser.find_element(By.ID, "live").text,
               lambda: live_state(browser) == "live", timeout=15)
    browser.execute_script("window.__sameDocument = 'yes';")


def same_document(browser):
    return browser.execute_script("return window.__sameDocument || 'reloaded';") == "yes"


def test_the_page_lists_services_with_their_registry_endpoints(stack, browser):
    deploy(stack, WEB)
    rec = record_of(stack, "/dash/web")[0]
    endpoint = f"{rec['host']}:{rec['ports']['http']['external']}"
    open_page(browser, stack.url)
    eventually("the web row with its endpoint",
               lambda: endpoint in (cell(browser, "/dash/web", "endpoints") or ""), timeout=10)
    r = row(browser, "/dash/web")
    assert r.get_attribute("data-colour") == "green", r.text
    assert "busybox httpd" in cell(browser, "/dash/web", "runs")
    assert cell(browser, "/dash/web", "wanted") == "1"
    # The registry's own view and the dashboard link to each other.
    link = browser.find_element(By.ID, "registry-link").get_attribute("href")
    assert link == stack.subscriber + "/info"
    with urllib.request.urlopen(stack.subscriber + "/info") as resp:
        info = resp.read().decode()
    assert f'href="http://127.0.0.1:{stack.deployer_port}/"' in info, info
    # Without JavaScript: the same facts in the HTML, actions hidden.
    with urllib.request.urlopen(stack.url + "/") as resp:
        html = resp.read().decode()
    assert "/dash/web" in html and endpoint in html
    assert '<section id="apply" class="js-only" hidden>' in html


def test_a_scale_through_the_api_shows_without_a_reload(stack, browser):
    deploy(stack, WEB)
    open_page(browser, stack.url)
    status, body = http("PUT", stack.manager + "/v2/apps/dash/web?force=true", {"instances": 3})
    assert status == 200, body
    eventually("3 wanted and 3 running on the page",
               lambda: (cell(browser, "/dash/web", "wanted"), cell(browser, "/dash/web", "running")) == ("3", "3"),
               timeout=15)
    assert same_document(browser), "the page was reloaded"
    # The strip shows the task events as they came.
    strip = browser.find_element(By.ID, "strip").text
    assert "/dash/web" in strip and "TASK_RUNNING" in strip, strip
    http("PUT", stack.manager + "/v2/apps/dash/web?force=true", {"instances": 1})


def test_a_failing_health_check_turns_the_service_red(stack, browser):
    marker = tempfile.NamedTemporaryFile(prefix="mdo-dash-healthy-", delete=False)
    marker.close()
    app = {
        "id": "/dash/checked", "cmd": "sleep 3600", "instances": 1, "cpus": 0.01, "mem": 16,
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": f"test -f {marker.name}"},
                          "gracePeriodSeconds": 0, "intervalSeconds": 1, "timeoutSeconds": 2,
                          "maxConsecutiveFailures": 0}],
    }
    status, body = http("POST", stack.manager + "/v2/apps", app)
    assert status == 201, body
    open_page(browser, stack.url)
    eventually("checked is green", lambda: (row(browser, "/dash/checked") or browser).get_attribute("data-colour") == "green",
               timeout=20)
    os.unlink(marker.name)
    eventually("checked turns red", lambda: row(browser, "/dash/checked").get_attribute("data-colour") == "red",
               timeout=20)
    assert "failing health checks" in cell(browser, "/dash/checked", "status")
    assert same_document(browser), "the page was reloaded"
    # Opened: its task with the failing check's cause.
    open_row(browser, "/dash/checked")
    eventually("the task's failing check", lambda: "failing" in browser.find_element(
        By.CSS_SELECTOR, "tr.detail-row table.tasks").text, timeout=10)
    http("DELETE", stack.manager + "/v2/apps/dash/checked?force=true")


def test_a_service_opens_to_its_tasks_logs_and_records(stack, browser):
    deploy(stack, WEB)
    rec = record_of(stack, "/dash/web")[0]
    open_page(browser, stack.url)
    open_row(browser, "/dash/web")
    detail = eventually("the opened service", lambda: browser.find_element(By.CSS_SELECTOR, "tr.detail-row table.tasks"),
                        timeout=10)
    task = detail.find_element(By.CSS_SELECTOR, "tr.task")
    assert task.get_attribute("data-task") == rec["container"]
    assert "TASK_RUNNING" in task.text
    assert f"http={rec['ports']['http']['external']}" in task.text
    # Its registry record, as stored.
    assert f'"container": "{rec["container"]}"' in task.find_element(By.CSS_SELECTOR, "pre.record").text


def test_the_page_says_when_it_is_disconnected_and_comes_back(stack, browser):
    url = stack.deployer(name="deployer-restart")
    port = int(url.rsplit(":", 1)[1])
    open_page(browser, url)
    stack.kill("deployer-restart")
    eventually("the page says it is disconnected",
               lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "disconnected", timeout=10)
    stack.deployer(name="deployer-restart-2", port=port)
    eventually("the page is live again",
               lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live", timeout=15)
    assert same_document(browser)
    stack.kill("deployer-restart-2")


def test_scale_from_the_page(stack, browser):
    deploy(stack, WEB)
    open_page(browser, stack.url)
    open_row(browser, "/dash/web")
    box = eventually("the scale box", lambda: browser.find_element(By.CSS_SELECTOR, "tr.detail-row .actions .scale-to"))
    box.clear()
    box.send_keys("2")
    browser.find_element(By.CSS_SELECTOR, "tr.detail-row .actions button.scale").click()
    eventually("the manager wants 2", lambda: stack.app("/dash/web")["instances"] == 2, timeout=10)
    eventually("2 running on the page", lambda: cell(browser, "/dash/web", "running") == "2", timeout=15)
    http("PUT", stack.manager + "/v2/apps/dash/web?force=true", {"instances": 1})


def test_apply_from_the_page_shows_the_plan_first(stack, browser):
    open_page(browser, stack.url)
    doc = "deploy:\n  pasted:\n    cmd: sleep 3600\n    labels: [dash]\n    instances: 2\n"
    area = browser.find_element(By.ID, "doc")
    area.clear()
    area.send_keys(doc)
    browser.find_element(By.ID, "plan-button").click()
    plan = eventually("the plan", lambda: browser.find_elements(By.CSS_SELECTOR, "#plan-table tr.plan-row"), timeout=10)
    assert plan[0].get_attribute("data-action") == "create", plan[0].text
    assert stack.app("/dash/pasted") is None, "the plan applied something"
    browser.find_element(By.ID, "apply-button").click()
    eventually("the manager has the pasted service", lambda: stack.app("/dash/pasted"), timeout=10)
    eventually("the pasted service on the page", lambda: row(browser, "/dash/pasted"), timeout=10)
    # The same document again: unchanged.
    area = browser.find_element(By.ID, "doc")
    area.clear()
    area.send_keys(doc)
    browser.find_element(By.ID, "plan-button").click()
    eventually("an unchanged plan", lambda: [r.get_attribute("data-action") for r in browser.find_elements(
        By.CSS_SELECTOR, "#plan-table tr.plan-row")] == ["unchanged"], timeout=10)
    http("DELETE", stack.manager + "/v2/apps/dash/pasted?force=true")


def test_a_token_protected_deployer_refuses_actions_without_the_token(stack, browser):
    url = stack.token_url
    # The API itself.
    assert http("POST", url + "/scale", {"app_id": "/dash/web", "instances": 4})[0] == 401
    assert http("POST", url + "/deploy?dry_run=true", WEB, content_type="application/yaml")[0] == 401
    deploy(stack, WEB)
    # The page: sign in with the token (a form, no script needed), then act
    # without the token typed in: refused; with it: done.
    browser.get(url + "/")
    browser.find_element(By.ID, "login-token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-button").click()
    eventually("the page is live", lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live",
               timeout=15)
    browser.execute_script("sessionStorage.removeItem('mdo-token');")
    browser.find_element(By.ID, "token").clear()
    open_row(browser, "/dash/web")
    box = eventually("the scale box", lambda: browser.find_element(By.CSS_SELECTOR, "tr.detail-row .actions .scale-to"))
    box.clear()
    box.send_keys("4")
    browser.find_element(By.CSS_SELECTOR, "tr.detail-row .actions button.scale").click()
    result = eventually("the refusal", lambda: browser.find_element(
        By.CSS_SELECTOR, "tr.detail-row .actions .result.bad").text, timeout=10)
    assert "401" in result, result
    assert stack.app("/dash/web")["instances"] == 1
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    box = browser.find_element(By.CSS_SELECTOR, "tr.detail-row .actions .scale-to")
    box.clear()
    box.send_keys("4")
    browser.find_element(By.CSS_SELECTOR, "tr.detail-row .actions button.scale").click()
    eventually("the manager wants 4", lambda: stack.app("/dash/web")["instances"] == 4, timeout=10)
    http("PUT", stack.manager + "/v2/apps/dash/web?force=true", {"instances": 1})
