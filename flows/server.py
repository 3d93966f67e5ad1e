"""The Prefect server a command talks to, and its life cycle.

- `neural-trader server` starts `prefect server start` in the background on
  127.0.0.1 and records it under <workspace>/.nt/prefect-server (server.pid,
  server.url); `neural-trader server --stop` stops it. `run` reuses it while it
  answers, and so does `serve` (`ensure_server`).
- With no server running and no PREFECT_API_URL, `run` starts a temporary
  server on a free port, tied to the run (`Tied`): a watchdog process holds a
  pipe from the run and stops the server's process group when the pipe ends,
  which it does however the run ends, `kill -9` included (`guard`). (Prefect's own
  temporary server, a uvicorn subprocess of its client, outlives a killed
  parent.) Before it stops, the run drains its events and the server records
  them (`settle`): stopped mid-write, the server logs an ERROR and a traceback.

Stdlib only at import: this runs before Prefect is imported, which reads its
settings then. `python -m flows.server PGID` is the watchdog.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

GRACE_S = 15.0  # seconds a stopped server has to shut down cleanly before its group is killed
FINAL = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]  # task-run state types the server records last


def server_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int, ui: bool = False) -> list[str]:
    """`prefect server start` on 127.0.0.1:port; with the UI only if `ui` (run it with `server_env(port)`)."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
            *([] if ui else ["--no-ui"])]


def server_env(port: int) -> dict[str, str]:
    """This process's environment for a server on 127.0.0.1:port whose UI calls that server's API.

    Without PREFECT_SERVER_UI_API_URL the UI is told the API of port 4200 (or whatever
    PREFECT_API_URL says), so any other port gives "Can't connect to Server API".
    """
    api_url = f"http://127.0.0.1:{port}/api"
    return {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_API_URL": api_url, "PREFECT_UI_API_URL": api_url}


def wait_healthy(api_url: str, proc: subprocess.Popen, log: Path, wait_s: float = 120.0) -> None:
    """Return once the server at `api_url` answers; fail if `proc` ends first or `wait_s` passes."""
    deadline = time.monotonic() + wait_s
    while not server_healthy(api_url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"prefect server did not become healthy on {api_url}; see {log}:\n"
                               f"{log.read_text()[-2000:] if log.is_file() else ''}")
        time.sleep(0.2)


# ------------------------------------------------------------------------ tied processes
def guard(pgid: int) -> subprocess.Popen:
    """A watchdog that stops process group `pgid` once this process is gone, however it goes (`kill -9` too).

    The watchdog (`python -m flows.server PGID`) reads a pipe only this
    process holds: end of file comes when the pipe is closed or this process
    dies. Then it SIGTERMs the group, and SIGKILLs what is left after GRACE_S.
    It exits by itself once the group is gone.
    """
    return subprocess.Popen([sys.executable, "-m", "flows.server", str(pgid)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, start_new_session=True)


class Tied:
    """`args` in a process group of their own, guarded: the group goes when this process goes."""

    def __init__(self, args: list[str], out: IO | int | None = None, **popen) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, **popen)
        self.guard = guard(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """`sig` to the group, SIGKILL to what is left of it after GRACE_S; then the guard goes."""
        for signum, wait in ((sig, GRACE_S), (signal.SIGKILL, None)):
            try:
                os.killpg(self.proc.pid, signum)
                self.proc.wait(timeout=wait)
                break
            except ProcessLookupError:  # the group is gone
                self.proc.wait()
                break
            except subprocess.TimeoutExpired:
                continue
        self.guard.stdin.close()
        self.guard.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def watch(pgid: int) -> None:
    """The watchdog: wait for end of file on stdin (or for the group to go), then stop group `pgid`."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped by a signal: stop the group too
    try:
        while _group_alive(pgid):
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready and not os.read(sys.stdin.fileno(), 1024):
                break  # the process that started us closed the pipe, or is gone
    finally:
        stop_group(pgid)


def stop_group(pgid: int, grace: float = GRACE_S) -> bool:
    """SIGTERM process group `pgid` (not a child of this process), SIGKILL what is left after `grace` s.

    False if the group was gone already.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return sig != signal.SIGTERM
        deadline = time.monotonic() + wait
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return True


# ------------------------------------------------------------------------ the run's server
class RunServer:
    """The server a run talks to: a running one (PREFECT_API_URL, or the workspace's), else a temporary one.

    `start` begins before Prefect is imported (the server boots while the run
    imports) and sets PREFECT_API_URL for this process and its subprocesses
    (Dask workers of a local cluster included); `wait` returns once it answers;
    `stop` drains this process's events to a temporary server, lets it record
    them, then stops it.
    """

    def __init__(self, workspace: str | Path) -> None:
        self.home = server_home(workspace)
        self.tied: Tied | None = None
        self.since = datetime.now(timezone.utc)
        self.api_url = os.environ.get("PREFECT_API_URL") or running_server(self.home)

    def start(self) -> RunServer:
        if not self.api_url:
            self.home.mkdir(parents=True, exist_ok=True)
            port = free_port()
            self.api_url = f"http://127.0.0.1:{port}/api"
            self.tied = Tied(server_command(port), (self.home / "temporary.log").open("w"))
            log.info("Starting temporary server on %s (its log: %s)", self.api_url.removesuffix("/api"),
                     self.home / "temporary.log")
        os.environ["PREFECT_API_URL"] = self.api_url
        return self

    def wait(self, wait_s: float = 120.0) -> None:
        if self.tied:
            wait_healthy(self.api_url, self.tied.proc, self.home / "temporary.log", wait_s)

    def settings(self) -> contextlib.AbstractContextManager:
        """Prefect settings for the run's flow: on a temporary server, no flow heartbeats.

        A heartbeat tells a long-lived server that a flow run is alive (else it
        marks it crashed); a temporary server lives exactly as long as the run.
        And the flow's end joins the heartbeat thread, which sleeps in 1 s steps:
        up to a second more per flow run.
        """
        if not self.tied:
            return contextlib.nullcontext()
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})

    def stop(self, settled: bool = True) -> None:
        """Stop a temporary server; with `settled`, once it has recorded this process's task runs."""
        if not self.tied:
            return
        if "prefect" in sys.modules:  # else nothing of Prefect's ran: nothing to drain or record
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            # drained at exit instead, they would retry a stopped server for a minute
            APILogWorker.drain_all(timeout=10)
            EventsWorker.drain_all(timeout=10)
            if settled:
                settle(self.api_url, self.since)
        log.info("Stopping temporary server on %s", self.api_url.removesuffix("/api"))
        self.tied.stop()


def _count(api_url: str, body: dict) -> int:
    req = urllib.request.Request(f"{api_url}/task_runs/count", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(r.read())


def settle(api_url: str, since: datetime, timeout: float = 15.0, every: float = 0.3) -> bool:
    """Wait until the server has recorded the task runs of the flow runs started after `since`.

    The server builds task runs from the client's events, one database write
    per event, behind the run: they are all in when every such task run is in
    a final state and their number holds still between two looks.
    """
    runs = {"flow_runs": {"start_time": {"after_": since.isoformat()}}}
    unfinished = {**runs, "task_runs": {"state": {"type": {"not_any_": FINAL}}}}
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        try:
            total = _count(api_url, runs)
            if total == last and _count(api_url, unfinished) == 0:
                return True
        except OSError:
            return False  # the server is gone: nothing to wait for
        last = total
        time.sleep(every)
    return False


# ------------------------------------------------------------------------ a background server
def server_home(workspace: str | Path) -> Path:
    """Where a workspace records its background server (server.pid, server.url, server.log) and temporary.log."""
    return Path(workspace) / ".nt" / "prefect-server"


def running_server(home: Path) -> str | None:
    """The API URL recorded in `home` (by `ensure_server`) if that server answers."""
    record = home / "server.url"
    url = record.read_text().strip() if record.is_file() else None
    return url if url and server_healthy(url) else None


def ensure_server(port: int, home: Path, wait_s: float = 120.0) -> tuple[str, int | None]:
    """The API URL of a healthy local server on 127.0.0.1:port, starting one in the background if needed.

    Returns (api_url, pid of the server this call started, or None if one was running).
    The server outlives this process; its pid and url are recorded in `home`
    (server.pid, server.url), its output goes to <home>/server.log.
    """
    if recorded := running_server(home):
        return recorded, None
    api_url = f"http://127.0.0.1:{port}/api"
    if server_healthy(api_url):
        return api_url, None
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    proc = subprocess.Popen(server_command(port, ui=True), stdout=log.open("a"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=server_env(port))
    (home / "server.pid").write_text(f"{proc.pid}\n")
    try:
        wait_healthy(api_url, proc, log, wait_s)
    except RuntimeError:
        proc.kill()
        raise
    (home / "server.url").write_text(f"{api_url}\n")
    return api_url, proc.pid


def stop_server(home: Path) -> int | None:
    """Stop the server recorded in `home` (its own process group) and forget it; its pid, or None if none ran."""
    record = home / "server.pid"
    pid = int(record.read_text()) if record.is_file() else None
    for name in ("server.pid", "server.url"):
        (home / name).unlink(missing_ok=True)
    return pid if pid and stop_group(pid) else None


if __name__ == "__main__":
    watch(int(sys.argv[1]))
