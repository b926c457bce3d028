"""Check the MLflow and Prefect UIs a user opens, against a real project: start ``mlflow ui`` on the
project's store and a Prefect server, both on 127.0.0.1 (free ports), and ask them what the browser
would show.

* MLflow: the index page loads; the experiment (``tracking.experiment``, default ``cgpt``) lists a run
  named ``--run-name``; that run's curves (``train/loss``, ``val/loss``, ``train/lr``) have more than one point.
* Prefect: the UI's index page and a flow run's page load; the API lists the flow runs with their
  state names, and each one's task runs with theirs.

``--flow`` first runs the pipeline flow once against that Prefect server (``flows/pipeline.py``: on a
project that is up to date, a few seconds), so a fresh ``--prefect-home`` has a flow run to show.
``--screenshot DIR`` saves what a browser shows (headless Chromium, Debian's ``chromium`` package):
the run's loss curves in MLflow (``mlflow-curves.png``) and the Prefect flow run page
(``prefect-flow-run.png``). Exit status 0 when every check passes, 1 with
one line per failed check otherwise (tests/e2e/test_ui_check.py runs it on the e2e project).

    python scripts/ui_check.py --project . --prefect-home /tmp/ph --flow --screenshot docs/img
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CURVES = ("train/loss", "val/loss", "train/lr")  # what the run page's charts must draw as lines, not dots
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> tuple[int, str]:
    """(status, text) of a GET, or of a JSON POST when ``body`` is given; status 0 when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    # a browser's Accept: Prefect's UI answers a page route (/runs/flow-run/<id>) only to an HTML navigation
    headers = {"Content-Type": "application/json"} if data else {"Accept": "text/html,application/json"}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError:
        return 0, ""


@contextmanager
def serving(cmd: list[str], health: str, env: dict[str, str], log: Path, what: str) -> Iterator[None]:
    """Run ``cmd`` until ``health`` answers 200 (no time limit: a loaded machine is slow, not broken),
    stop it on exit; a server that exits before answering is an error naming its log."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while http(health, timeout=5)[0] != 200:
            if proc.poll() is not None:
                raise SystemExit(f"error: {what} exited ({proc.returncode}) before answering; see {log}")
            time.sleep(1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


class Checks:
    """Every check's outcome, printed as it is made; ``failed`` lists the ones that did not hold."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str) -> bool:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failed.append(what)
        return ok


def check_mlflow(base: str, experiment: str, run_name: str, check: Checks) -> str | None:
    """The MLflow checks; the URL of the run's loss curves when the run was found."""
    status, html = http(base + "/")
    check(status == 200 and "mlflow" in html.lower(), f"MLflow index page {base}/ loads (HTTP {status})")
    api = base + "/api/2.0/mlflow"
    status, text = http(f"{api}/experiments/get-by-name?experiment_name={experiment}")
    if not check(status == 200, f"MLflow experiment {experiment!r} exists (HTTP {status})"):
        return None
    exp_id = json.loads(text)["experiment"]["experiment_id"]
    status, text = http(f"{api}/runs/search", {"experiment_ids": [exp_id], "max_results": 100})
    runs = json.loads(text).get("runs", []) if status == 200 else []
    names = [r["info"].get("run_name", "") for r in runs]
    print(f"     runs of {experiment!r}: {names}")
    named = [r for r in runs if run_name in r["info"].get("run_name", "")]
    if not check(bool(named), f"the runs list of {experiment!r} has a run named {run_name!r}"):
        return None
    run = next((r for r in named if r["data"].get("metrics")), named[0])
    run_id = run["info"]["run_id"]
    for key in CURVES:
        status, text = http(f"{api}/metrics/get-history?run_id={run_id}&metric_key={urllib.parse.quote(key, safe='')}")
        points = json.loads(text).get("metrics", []) if status == 200 else []
        check(len(points) > 1, f"run {run_id[:8]}'s metric {key!r} is a curve ({len(points)} points)")
    # the run's curves on one chart by step (MLflow's metric page; the run page's chart tab renders
    # its charts lazily, as they scroll into view, so a screenshot of it holds spinners)
    keys = json.dumps(["train/loss", "val/loss"]).replace(" ", "")
    return f'{base}/#/metric?runs=["{run_id}"]&metric="train/loss"&experiments=["{exp_id}"]&plot_metric_keys={keys}&x_axis=step&show_point=true'  # noqa: E501


def check_prefect(base: str, check: Checks) -> str | None:
    """The Prefect checks; the newest flow run's page URL when there is one."""
    status, html = http(base + "/")
    check(status == 200 and "<html" in html.lower(), f"Prefect UI index page {base}/ loads (HTTP {status})")
    status, text = http(f"{base}/api/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 20})
    flow_runs = json.loads(text) if status == 200 else []
    if not check(bool(flow_runs), f"the Prefect API lists flow runs ({len(flow_runs)})"):
        return None
    for fr in flow_runs:
        state = (fr.get("state") or {}).get("name")
        check(bool(state), f"flow run {fr['name']!r} has a state name ({state})")
        status, text = http(f"{base}/api/task_runs/filter", {"flow_runs": {"id": {"any_": [fr["id"]]}}})
        tasks = json.loads(text) if status == 200 else []
        print("     tasks: " + ", ".join(f"{t['name']} [{(t.get('state') or {}).get('name')}]" for t in tasks))
        check(all((t.get("state") or {}).get("name") for t in tasks), f"every task of {fr['name']!r} has a state name")
    page = f"{base}/runs/flow-run/{flow_runs[0]['id']}"
    status, html = http(page)
    check(status == 200 and "<html" in html.lower(), f"the flow run's page {page} loads (HTTP {status})")
    return page


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(url: str, out: Path, check: Checks, width: int = 1440, height: int = 1000) -> None:
    """What headless Chromium shows at ``url`` after its scripts ran (virtual time: the pages fetch data)."""
    exe = chromium()
    if exe is None:
        check(False, "a Chromium to take screenshots with (Debian: apt-get install chromium)")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--virtual-time-budget=20000", f"--screenshot={out}", url]  # fmt: skip
        subprocess.run(cmd, capture_output=True, text=True)
    check(out.is_file() and out.stat().st_size > 10_000, f"screenshot {out} of {url}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--project", type=Path, default=Path("."), help="the cgpt project (its mlflow.db, mlartifacts/)")
    ap.add_argument("--experiment", default="cgpt", help="the MLflow experiment (tracking.experiment)")
    ap.add_argument("--run-name", default="default", help="a run the experiment must list (train.run_name)")
    ap.add_argument("--prefect-home", type=Path, help="the Prefect server's home (its database); default ~/.prefect")
    ap.add_argument("--flow", action="store_true", help="run the pipeline flow once against the server first")
    ap.add_argument("--screenshot", type=Path, metavar="DIR", help="save the screenshots (PNG) here")
    args = ap.parse_args(argv)
    project = args.project.resolve()
    if not (project / "mlflow.db").is_file():
        print(f"error: {project / 'mlflow.db'} does not exist; run the pipeline first (`dvc repro`)", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if args.prefect_home:
        args.prefect_home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(args.prefect_home.resolve())
    mport, pport = free_port(), free_port()
    mbase, pbase = f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{pport}"
    # `prefect server start --port N` alone leaves the UI calling the default :4200 ("Can't connect to
    # Server API at http://127.0.0.1:4200/api"): the UI's API URL must name the port too
    env["PREFECT_UI_API_URL"] = f"{pbase}/api"
    logs = Path(tempfile.mkdtemp(prefix="ui_check."))
    check = Checks()
    mlflow_cmd = [str(BIN / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(mport), "--workers", "1",
                  "--backend-store-uri", f"sqlite:///{project / 'mlflow.db'}",
                  "--artifacts-destination", str(project / "mlartifacts")]  # fmt: skip
    prefect_cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(pport)]
    with (
        serving(mlflow_cmd, f"{mbase}/health", env, logs / "mlflow.log", "mlflow ui"),
        serving(prefect_cmd, f"{pbase}/api/health", env, logs / "prefect.log", "prefect server"),
    ):
        print(f"MLflow UI {mbase}, Prefect UI {pbase} (logs in {logs})")
        if args.flow:
            proc = subprocess.run([sys.executable, "flows/pipeline.py"], cwd=project, capture_output=True, text=True,
                                  env={**env, "PREFECT_API_URL": f"{pbase}/api"})  # fmt: skip
            (logs / "flow.log").write_text(proc.stdout + proc.stderr)
            check(proc.returncode == 0, f"the pipeline flow ran against the server (exit {proc.returncode})")
        run_page = check_mlflow(mbase, args.experiment, args.run_name, check)
        flow_page = check_prefect(pbase, check)
        if args.screenshot:
            if run_page:
                screenshot(run_page, args.screenshot / "mlflow-curves.png", check, width=1800, height=900)
            if flow_page:
                screenshot(flow_page, args.screenshot / "prefect-flow-run.png", check)
    for what in check.failed:
        print(f"failed: {what}", file=sys.stderr)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
