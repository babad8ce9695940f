"""A Prefect "cluster" on one machine, the way several machines would run leadflow: one Prefect
server (its own database, e.g. PostgreSQL), a process work pool, `prefect deploy --all` from
prefect.yaml, and N workers pulling from the pool, all sharing leadflow's database.

Used by the multi-worker tests; also runnable by hand:

    python -m deployments.local_cluster --workers 2 --prefect-db postgresql+asyncpg://...

Everything goes through Prefect's CLI and REST API in subprocesses, exactly as separate
machines would talk to the server."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from deployments.catalog import WORK_POOL

ROOT = Path(__file__).resolve().parent.parent
API_ATTEMPTS = 5  # requests to the Prefect API answered 503 are sent again, this many in all
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    home: Path  # PREFECT_HOME of the server, the CLI and the workers
    prefect_db_url: str | None = None  # None: the server's default SQLite file in `home`
    env: Mapping[str, str] = field(default_factory=dict)  # leadflow settings for the workers
    port: int = field(default_factory=_free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def process_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env.update({
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "LEADFLOW_PROJECT_DIR": str(ROOT),
        })
        if self.prefect_db_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.prefect_db_url
        return env

    def run_prefect(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args],
                              cwd=ROOT, env=self.process_env(), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], cwd=ROOT,
                                    env=self.process_env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def start_server(self, timeout: float = 180) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(["server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                           self.home / "server.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited; see {self.home / 'server.log'}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the Prefect server did not answer within {timeout} s")

    def deploy_all(self) -> None:
        """Create the process work pool and register every deployment of prefect.yaml."""
        self.run_prefect("work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
        self.run_prefect("deploy", "--all")

    def start_workers(self, count: int, limit: int = 2) -> None:
        for n in range(count):
            self._spawn(["worker", "start", "--pool", WORK_POOL, "--name", f"worker-{n}",
                         "--limit", str(limit)], self.home / f"worker-{n}.log")

    # --- REST API ------------------------------------------------------------------------

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        # Prefect's server answers 503 when its own database is momentarily busy (a SQLite
        # server under load: "database is locked"); the request was rolled back, so it is sent
        # again, a few times, after the wait the server names or a short backoff.
        for attempt in range(API_ATTEMPTS):
            resp = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
            if resp.status_code != 503 or attempt == API_ATTEMPTS - 1:
                break
            wait = resp.headers.get("retry-after", "")
            time.sleep(min(float(wait), 10.0) if wait.isdigit() else 0.5 * 2**attempt)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def deployment_names(self) -> list[str]:
        return sorted(d["name"] for d in self._api("POST", "/deployments/filter", json={}))

    def deployment(self, flow_name: str, name: str) -> dict[str, Any]:
        return self._api("GET", f"/deployments/name/{flow_name}/{name}")

    def trigger(self, deployment: str, parameters: dict[str, Any] | None = None,
                in_seconds: float = 0) -> str:
        """Create a flow run of `deployment` ("flow/deployment"), scheduled `in_seconds` from
        now; returns its id."""
        flow_name, name = deployment.split("/")
        dep = self.deployment(flow_name, name)
        when = datetime.now(UTC) + timedelta(seconds=in_seconds)
        run = self._api("POST", f"/deployments/{dep['id']}/create_flow_run", json={
            "parameters": parameters or {},
            "state": {"type": "SCHEDULED",
                      "state_details": {"scheduled_time": when.isoformat()}},
        })
        return str(run["id"])

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self._api("GET", f"/flow_runs/{run_id}")

    def run_logs(self, run_id: str) -> list[str]:
        """The messages of a flow run's log (what its page in the UI shows), oldest first."""
        logs = self._api("POST", "/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200})
        return [entry["message"] for entry in logs]

    def wait(self, run_ids: list[str], timeout: float = 600) -> dict[str, str]:
        """Wait until every run reaches a final state; returns run id -> state type."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {rid: self.flow_run(rid)["state_type"] for rid in run_ids}
            if all(s in FINAL_STATES for s in states.values()):
                return states
            time.sleep(1)
        raise TimeoutError(f"flow runs not finished after {timeout} s: {states}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.home.glob("*.log")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=2, help="Flow runs per worker at once.")
    parser.add_argument("--prefect-db", default=None, help="Prefect server database URL.")
    parser.add_argument("--home", type=Path, default=Path(".leadflow/prefect-cluster"))
    args = parser.parse_args()
    cluster = LocalCluster(home=args.home.resolve(), prefect_db_url=args.prefect_db)
    try:
        cluster.start_server()
        cluster.deploy_all()
        cluster.start_workers(args.workers, args.limit)
        print(f"Prefect API at {cluster.api_url}; {args.workers} workers on pool {WORK_POOL}; "
              "Ctrl-C stops everything")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
