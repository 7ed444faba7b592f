#!/usr/bin/env python3
"""The web surface, checked from outside, run by .ci/run after the Rust tests:

1. /openapi.json is valid OpenAPI 3.1 (openapi-spec-validator), and every answer a running
   limen gives to a list of real requests (successes and failures of every route family)
   validates against the schema the document declares for that path, method and status;
2. the status page and a `limen report` file, loaded in headless Chromium (Debian's, through
   chromedriver): no console error, every model's name and production version visible, every
   chart an SVG of non-zero size; one screenshot per page in target/ci-screenshots/.

    target/web-venv/bin/python tests/web/check.py target/debug/limen
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMEN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "limen"))
SHOTS = os.path.join(ROOT, "target", "ci-screenshots")
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def limen(args, env):
    return subprocess.run([LIMEN, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.getheader("content-type") or "", r.read()


def start(env):
    proc = subprocess.Popen([LIMEN, "serve", "--addr", "127.0.0.1:0", "--shadow-rate", "1", "--poll-interval", "100ms"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    port = int(line.strip().rsplit(":", 1)[1])
    for _ in range(200):
        try:
            if request(port, "GET", "/v2/health/ready")[0] == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("limen did not become ready")


def main():
    store = tempfile.mkdtemp(prefix="limen-web-")
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    iris = limen(["train", "--cv-folds", "0"], env).split()[-1]
    limen(["validate"], env)
    candidate = limen(["train", "--cv-folds", "0", "--alpha", "30"], env).split()[-1]
    four = "sepal_length,sepal_width,petal_length,petal_width"
    species = limen(["train", "--model", "iris-species", "--multiclass", "--features", four, "--standardize", "--cv-folds", "0"], env).split()[-1]
    limen(["validate", "--model", "iris-species"], env)
    proc, port = start(env)
    try:
        openapi(port, iris, candidate)
        browser(port, store, env, {"iris": iris, "iris-species": species})
    finally:
        proc.terminate()
        proc.wait()
    print(f"\n{len(failures)} failure(s)" if failures else "\nall web checks passed")
    sys.exit(1 if failures else 0)


def openapi(port, iris, candidate):
    from jsonschema import Draft202012Validator
    from openapi_spec_validator import validate
    from referencing import Registry, Resource

    status, ctype, body = request(port, "GET", "/openapi.json")
    doc = json.loads(body)
    try:
        validate(doc)
        check(True, "GET /openapi.json is valid OpenAPI 3.1 (openapi-spec-validator)")
    except Exception as e:  # noqa: BLE001 - report any validation error
        check(False, f"/openapi.json is not valid OpenAPI: {e}")
    registry = Registry().with_resource("urn:limen", Resource.from_contents(doc, default_specification=Draft202012Validator.META_SCHEMA and None) if False else Resource.opaque(doc))

    def schema_for(template, method, status):
        op = doc["paths"][template][method.lower()]
        response = op["responses"].get(str(status))
        if response is None:
            return None, f"no response {status} documented"
        content = response.get("content", {})
        if "application/json" not in content:
            return None, None
        return content["application/json"]["schema"], None

    infer = json.dumps({"id": "7", "inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP64", "data": [2.1, 0.2]}]})
    cases = [
        ("GET", "/ready", "/ready", None),
        ("POST", "/predict", "/predict", '{"petal_width": "2.1"}'),
        ("POST", "/predict", "/predict", '{"instances": [{"petal_width": 1}, {"petal_width": 2}]}'),
        ("POST", "/predict", "/predict", '{"petal_width": "x"}'),
        ("POST", "/predict", "/predict", "not json"),
        ("POST", "/explain", "/explain", '{"petal_width": 2.1}'),
        ("POST", "/explain", "/explain", '{"instances": [{"petal_width": 1}]}'),
        ("GET", "/models", "/models", None),
        ("GET", "/models/iris", "/models/{name}", None),
        ("GET", "/models/nosuch", "/models/{name}", None),
        ("POST", "/models/iris/predict", "/models/{name}/predict", '{"petal_width": 1.7}'),
        ("POST", "/models/iris-species/predict", "/models/{name}/predict", '{"sepal_length": 6, "sepal_width": 3, "petal_length": 5, "petal_width": 2}'),
        ("POST", "/models/iris-species/explain", "/models/{name}/explain", '{"sepal_length": 6, "sepal_width": 3, "petal_length": 5, "petal_width": 2}'),
        ("POST", f"/models/iris/versions/{iris}/predict", "/models/{name}/versions/{version}/predict", '{"petal_width": 1.7}'),
        ("POST", "/models/iris/versions/0123/predict", "/models/{name}/versions/{version}/predict", '{"petal_width": 1.7}'),
        ("POST", "/models/iris/versions/99/predict", "/models/{name}/versions/{version}/predict", '{"petal_width": 1.7}'),
        ("GET", "/v2", "/v2", None),
        ("GET", "/v2/models/iris", "/v2/models/{name}", None),
        ("GET", f"/v2/models/iris/versions/{iris}", "/v2/models/{name}/versions/{version}", None),
        ("POST", "/v2/models/iris/infer", "/v2/models/{name}/infer", infer),
        ("POST", "/v2/models/iris/infer", "/v2/models/{name}/infer", '{"inputs": []}'),
        ("POST", f"/v2/models/iris/versions/{candidate}/infer", "/v2/models/{name}/versions/{version}/infer", infer),
        ("GET", "/v2/health/ready", "/v2/health/ready", None),
        ("GET", "/v2/models/iris/ready", "/v2/models/{name}/ready", None),
        ("GET", "/healthcheck", "/healthcheck", None),
        ("GET", "/version", "/version", None),
        ("GET", "/metrics", "/metrics", None),
        ("GET", "/", "/", None),
        ("GET", "/models/iris/report", "/models/{name}/report", None),
        ("GET", "/static/limen.css", "/static/limen.css", None),
    ]
    for method, path, template, body in cases:
        status, ctype, raw = request(port, method, path, body, {"Content-Type": "application/x-www-form-urlencoded"} if body else {})
        schema, problem = schema_for(template, method, status)
        if problem:
            check(False, f"{method} {path} answered {status}: {problem}")
            continue
        if schema is None:
            check(not ctype.startswith("application/json"), f"{method} {path} answered {status} {ctype} as documented")
            continue
        validator = Draft202012Validator({"$ref": "urn:limen" + schema["$ref"]} if "$ref" in schema else schema, registry=registry)
        errors = sorted(validator.iter_errors(json.loads(raw)), key=str)
        check(not errors, f"{method} {path} answered {status}, valid against its schema" + (f": {errors[0].message}" if errors else ""))


def browser(port, store, env, versions):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    os.makedirs(SHOTS, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,800", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        report_file = os.path.join(store, "iris-report.html")
        limen(["report", "iris", "--out", report_file], env)
        pages = [("status page", f"http://127.0.0.1:{port}/", versions),
                 ("model page", f"http://127.0.0.1:{port}/models/iris-species/report", {"iris-species": versions["iris-species"]}),
                 ("report file", "file://" + report_file, {"iris": versions["iris"]})]
        for name, url, expected in pages:
            driver.get(url)
            text = driver.find_element(By.TAG_NAME, "body").text
            severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            check(not severe, f"{name}: no console errors {severe[:3]}")
            for model, version in expected.items():
                check(model in text and version in text, f"{name}: {model} and its production version {version} visible")
            charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
            sizes = [(c.size["width"], c.size["height"]) for c in charts]
            check(charts and all(w > 0 and h > 0 for w, h in sizes), f"{name}: {len(charts)} chart(s), sizes {sizes}")
            shot = os.path.join(SHOTS, name.replace(" ", "-") + ".png")
            driver.save_screenshot(shot)
            print(f"      screenshot {os.path.relpath(shot, ROOT)}")
        # A phone: the page still fits.
        driver.set_window_size(390, 844)
        driver.get(f"http://127.0.0.1:{port}/")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        check(width <= 400, f"status page on a 390 px wide phone: no horizontal scroll ({width} px)")
        driver.save_screenshot(os.path.join(SHOTS, "status-page-phone.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
