"""Recording a run in DVC: `dvc commit` (dvc.lock and the cache), then `dvc push`, from Python.

A flow that ran the study in a DVC workspace has produced exactly the files
`dvc repro` would have. `record` makes DVC take them as they are: `dvc commit`
hashes every dep, param and out of the named stages into dvc.lock and copies
the outs into the cache, and `dvc push` sends them to the remote. A scheduled
run thus leaves a versioned result, and a later `dvc repro` reruns nothing.

Recording is only honest when the flow ran what dvc.yaml describes: the
workspace's own params.yaml with no overrides, and the workspace's own code.
`check_recordable` refuses anything else before any work starts.

DVC allows one command at a time per workspace: a second fails with "... is
busy" (or "Unable to acquire lock"). Our own DVC calls take the workspace lock
(`Workspace.lock`, an flock the OS frees when its holder dies) unless this
process already holds it, as the study flow does for its whole run; a
DVC command someone else started still wins, and `DvcBusy` says who it is and
how to get out of a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from . import registry as _registry
from .catalog import Workspace, atomic_write_bytes, file_digest
from .registry import ALL_STAGES, code_files

DVC_TIMEOUT_S = 900  # one DVC command; a push of the default study's outs takes seconds

_BUSY = re.compile(r"is busy, it is being blocked by|Unable to acquire lock")
_BLOCKER = re.compile(r"\(PID (\d+)\)")
_CHECKOUT = Path(_registry.__file__).resolve().parents[1]  # the checkout this process imports our code from


class DvcError(RuntimeError):
    """A DVC command failed, or the workspace cannot be recorded."""


class DvcBusy(DvcError):
    """Another DVC process holds the workspace: retry later, or clear a stale lock."""


# ---------------------------------------------------------------------- commands
def dvc(root: str | Path, *args: str, timeout: float = DVC_TIMEOUT_S) -> str:
    """Run `dvc ARGS` in `root` with this interpreter's DVC; return its output, or raise DvcBusy/DvcError."""
    command = f"dvc {' '.join(args)}"
    try:
        proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DvcError(f"`{command}` did not finish within {timeout:.0f} s in {root}") from None
    if proc.returncode == 0:
        return proc.stdout
    message = "\n".join(s.strip() for s in (proc.stderr, proc.stdout) if s.strip()) or "(no output)"
    if _BUSY.search(message):
        raise DvcBusy(busy_help(root, command, message))
    raise DvcError(f"`{command}` failed in {root} (exit {proc.returncode}):\n{message}")


def busy_help(root: str | Path, command: str, message: str) -> str:
    """DVC's busy message, plus what each blocking PID runs now and the way out of a stale lock."""
    root = Path(root)
    blockers = [int(pid) for pid in _BLOCKER.findall(message)]
    lock = root / ".dvc/tmp/rwlock"  # DVC's per-path locks, JSON naming the PIDs
    if not blockers:  # "Unable to acquire lock": the repository lock, whose file holds its PID
        lock = root / ".dvc/tmp/lock"
        with contextlib.suppress(OSError, ValueError, IndexError):
            blockers = [int(lock.read_text().split()[0])]
    now = {pid: _cmdline(pid) for pid in blockers}
    lines = [f"`{command}`: another DVC command holds {root}.", message.strip()]
    lines += [f"PID {pid} now runs: {' '.join(argv) or 'nothing (gone)'}" for pid, argv in now.items()]
    if now and not any(_is_dvc(argv) for argv in now.values()):
        lines.append(f"No DVC process holds it: the lock is stale (a crash, or a PID reused since). "
                     f"Remove it and retry: rm {lock}")
    else:
        lines.append(f"Wait for that command to finish and retry (the flow's `record` task retries by itself). "
                     f"If no DVC process runs in {root}, the lock is stale: rm {lock} and retry.")
    return "\n".join(lines)


def _cmdline(pid: int) -> list[str]:
    """The arguments of a live process, or [] when there is none."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0") if raw else []


def _is_dvc(argv: list[str]) -> bool:
    """`dvc ...` or `python -m dvc ...`."""
    return any(Path(arg).name == "dvc" for arg in argv)


# ------------------------------------------------------------------------ locking
@contextlib.contextmanager
def dvc_access(ws: Workspace, what: str) -> Iterator[None]:
    """Hold the workspace lock around DVC commands, unless this very process holds it already.

    The study flow holds the lock for its whole run; a task of that flow
    taking it again on a new file would wait for itself forever.
    """
    if _held_by_this_process(ws):
        yield
        return
    with ws.lock(what):
        yield


def _held_by_this_process(ws: Workspace) -> bool:
    path = ws.private / "lock"
    try:
        holder = path.read_text().strip()
    except OSError:
        return False
    if not holder.endswith(f" pid {os.getpid()}"):  # Workspace.lock writes "<what> pid <pid>"
        return False
    with path.open("a") as fh:  # the text may outlive a crash: is the lock really held?
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


# ---------------------------------------------------------------------- recording
def check_recordable(ws: Workspace, params: str | Path, overrides: Iterable[str], stages: Iterable[str],
                     needs_dvc_yaml: bool = True) -> None:
    """Raise DvcError unless dvc.lock may record what a run of `stages` on these params produces.

    `needs_dvc_yaml`: the stages are in ./dvc.yaml (the sweep's report writes its own sweeps/dvc.yaml).
    """
    root = ws.root
    if not (root / ".dvc").is_dir() or (needs_dvc_yaml and not (root / "dvc.yaml").is_file()):
        raise DvcError(f"record: {root} is not a DVC workspace (needs .dvc/ and dvc.yaml): run `dvc init` there")
    if overrides := list(overrides):
        raise DvcError(f"record: the run overrides {', '.join(overrides)}; dvc.lock would pair its outputs with "
                       "params they did not come from. Edit params.yaml, or use `dvc exp run -S`, instead.")
    if Path(params).resolve() != root / "params.yaml":
        raise DvcError(f"record: the run reads {params}; dvc.yaml reads {root / 'params.yaml'}")
    if stale := code_mismatches(ws, stages):
        raise DvcError(f"record: the code this process runs differs from {root}'s: {', '.join(stale)} "
                       "(is the environment installed from another checkout?)")


def code_mismatches(ws: Workspace, stages: Iterable[str]) -> list[str]:
    """Code files of `stages` whose imported source differs from the workspace's copy."""
    bad = set()
    for name in stages:
        for path in code_files(ALL_STAGES[name]):
            rel = path.resolve().relative_to(_CHECKOUT).as_posix()
            if file_digest(path) != file_digest(ws.root / rel):
                bad.add(rel)
    return sorted(bad)


def record(workspace: str | Path, stages: Iterable[str], push: bool = False, remote: str | None = None,
           timeout: float = DVC_TIMEOUT_S, lock: str = "dvc.lock") -> dict[str, Any]:
    """`dvc commit` the outs of `stages` as they are on disk (dvc.lock, cache), then `dvc push` them if asked.

    Args:
        workspace: the DVC workspace (git root holding dvc.yaml).
        stages: dvc.yaml stage names or groups, e.g. ["generate", "train"] for every generate@* and train@*.
        push: also send the outs to `remote` (default: the repo's default remote).
        timeout: seconds allowed to each DVC command.
        lock: the lock file the stages are recorded in, relative to the workspace.

    Returns:
        {"stages": [...], "dvc_lock": sha256 of `lock`, "pushed": DVC's push summary line or None}.
    """
    ws = Workspace(Path(workspace))
    targets = list(stages)
    with dvc_access(ws, "dvc record"):
        dvc(ws.root, "commit", "--force", *targets, timeout=timeout)  # not --quiet: it silences errors too
        pushed = None
        if push:
            out = dvc(ws.root, "push", *(["--remote", remote] if remote else []), *targets, timeout=timeout)
            pushed = out.strip().splitlines()[-1] if out.strip() else "nothing to push"
    return {"stages": targets, "dvc_lock": file_digest(ws.root / lock), "pushed": pushed}


def is_dvc_workspace(root: str | Path) -> bool:
    return (Path(root) / ".dvc").is_dir()


def add_rerun(workspace: str | Path, slot_folder: str, push: bool = False, remote: str | None = None,
              timeout: float = DVC_TIMEOUT_S) -> dict[str, Any]:
    """Version one rerun's folder and the ledger with `dvc add` (pointers: <folder>.dvc), then push if asked.

    A rerun overrides the base seed, so dvc.lock (which pairs outs with params.yaml)
    cannot describe it; each rerun is its own tracked folder instead.
    """
    ledger = (Path(slot_folder).parent / "ledger.json").as_posix()
    return add_folders(workspace, [slot_folder, ledger], push=push, remote=remote, timeout=timeout)


def add_folders(workspace: str | Path, targets: list[str], push: bool = False, remote: str | None = None,
                timeout: float = DVC_TIMEOUT_S) -> dict[str, Any]:
    """`dvc add` result folders and files that dvc.lock cannot describe (reruns, sweep points), in one call."""
    ws = Workspace(Path(workspace))
    if not is_dvc_workspace(ws.root):
        raise DvcError(f"record: {ws.root} is not a DVC workspace (needs .dvc/): run `git init && dvc init` there")
    with dvc_access(ws, "dvc add results"):
        dvc(ws.root, "add", *targets, timeout=timeout)
        pushed = None
        if push:
            out = dvc(ws.root, "push", *(["--remote", remote] if remote else []),
                      *[f"{t}.dvc" for t in targets], timeout=timeout)
            pushed = out.strip().splitlines()[-1] if out.strip() else "nothing to push"
    return {"added": [f"{t}.dvc" for t in targets], "pushed": pushed}


def record_sweep(workspace: str | Path, points: list[str], dvc_yaml: str, push: bool = False,
                 timeout: float = DVC_TIMEOUT_S) -> dict[str, Any]:
    """Version a sweep: `dvc add` each computed point's folder, then record its report in sweeps/dvc.lock.

    `dvc_yaml` is sweeps/dvc.yaml, the sweep_report stage over those folders
    (`stages.dvcfile.render_sweep_dvc_yaml`); `dvc commit` pairs the report's
    outputs on disk with its deps and params, so `dvc status` is clean and
    `dvc repro sweeps/dvc.yaml` reruns the report alone when a key it reads changes.
    The report owns sweeps/ledger.json: it is an out of that stage, not `dvc add`ed.
    """
    ws = Workspace(Path(workspace))
    folders = [ws.rel(ws.sweep_point(p)) for p in points]
    with dvc_access(ws, "dvc record sweep"):
        added = add_folders(ws.root, folders, push=push, timeout=timeout) if folders else {"added": [], "pushed": None}
        atomic_write_bytes(ws.sweep_dvc_yaml, dvc_yaml.encode())
        dvcfile = ws.rel(ws.sweep_dvc_yaml)
        recorded = record(ws.root, [f"{dvcfile}:sweep_report"], push=push, timeout=timeout,
                          lock=ws.rel(ws.sweep_dvc_yaml.with_suffix(".lock")))
    return {**added, "recorded": recorded}
