"""Fixtures of the dashboard's browser tests: the real stack (stack.py) and
Debian's chromium driven headless through the system chromedriver."""

import os
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from stack import Stack

TOKEN = "dashboard-test-token"


def chromium_paths():
    browser = os.environ.get("MDO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = os.environ.get("MDO_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return browser, driver


def new_driver(width=1400, height=1000):
    browser, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


@pytest.fixture(scope="session")
def stack():
    s = Stack().start()
    s.url = s.deployer(port=s.deployer_port)
    s.token_url = s.deployer(token=TOKEN, name="deployer-token")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def browser():
    d = new_driver()
    yield d
    d.quit()
