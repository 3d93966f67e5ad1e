"""Scheduled reruns that add evidence: one workspace per slot, a ledger, and a pooled report.

A rerun of a synthetic study with the same seeds only hits the cache, so each
scheduled slot draws fresh replica seeds, derived from the slot's time: the
same slot always gets the same seeds (a rerun of a slot reproduces it), two
slots never share them. Each rerun writes a complete workspace under
`reruns/<slot>/` (never another rerun's), is listed in `reruns/ledger.json`
with its headline numbers, and the pooled study concatenates the seeds of
every rerun of the same design, so its intervals narrow as reruns accumulate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig
from neural_trader.seeding import seed_from

from .catalog import Workspace, read_json, write_json

RERUNS = "reruns"


def slot_id(when: datetime) -> str:
    """A filesystem-safe UTC name for a scheduled slot, to the minute: 20261128T0200Z."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%MZ")


def slot_base_seed(slot: str) -> int:
    """The base seed of a slot's replicas (deterministic, distinct per slot)."""
    return seed_from("scheduled-rerun", slot)


def design_digest(cfg: StudyConfig) -> str:
    """What makes reruns poolable: every parameter except the base seed and the runtime."""
    design = cfg.model_dump(mode="json")
    design["seeds"].pop("base")
    design.pop("runtime")
    design.pop("sweep")  # the grid over the study is not part of its design
    return hashlib.sha256(json.dumps(design, sort_keys=True).encode()).hexdigest()[:16]


def rerun_root(root: Path, slot: str) -> Path:
    return Path(root) / RERUNS / slot


def pooled_workspace(root: Path) -> Workspace:
    return Workspace(Path(root) / RERUNS / "pooled")


def ledger_path(root: Path) -> Path:
    return Path(root) / RERUNS / "ledger.json"


def read_ledger(root: Path) -> list[dict[str, Any]]:
    path = ledger_path(root)
    return read_json(path)["reruns"] if path.exists() else []


def record_rerun(root: Path, slot: str, cfg: StudyConfig, flow_run_id: str | None) -> dict[str, Any]:
    """Add (or refresh) a slot's ledger entry with its headline numbers.

    The caller holds the workspace lock; the ledger is rewritten atomically.
    """
    ws = Workspace(rerun_root(root, slot))
    comparison = read_json(ws.comparison_json)
    entry = {
        "slot": slot,
        "seeds_base": cfg.seeds.base,
        "seeds": cfg.seeds.count,
        "design": design_digest(cfg),
        "flow_run_id": flow_run_id,
        "workspace": f"{RERUNS}/{slot}",
        "test_return": {f"{c['regime']}-{c['model']}": c["test_return"]["mean"] for c in comparison["cells"]},
        "gap": {f"{c['regime']}-{c['model']}": c["gap"]["mean"] for c in comparison["cells"]},
        "contrasts": {c["name"]: {"diff": c["diff"], "p_adj": c["p_adj"]} for c in comparison["contrasts"]},
    }
    entries = [e for e in read_ledger(root) if e["slot"] != slot] + [entry]
    entries.sort(key=lambda e: e["slot"])
    write_json(ledger_path(root), {"reruns": entries})
    return entry


def poolable(root: Path, cfg: StudyConfig) -> list[dict[str, Any]]:
    """Ledger entries of the same design as `cfg` whose results are on disk."""
    design = design_digest(cfg)
    return [e for e in read_ledger(root)
            if e["design"] == design and (Path(root) / e["workspace"] / "metrics" / "comparison.json").is_file()]


def pool_reruns(root: Path, cfg: StudyConfig) -> dict[str, Any]:
    """The comparison study over every poolable rerun, written to reruns/pooled/."""
    from .compare import compare  # the numerical stack, imported only when pooling

    entries = poolable(root, cfg)
    if not entries:
        raise FileNotFoundError(f"no rerun of this design in {ledger_path(root)}: run a scheduled rerun first")
    sources = [Workspace(Path(root) / e["workspace"]) for e in entries]
    summary = compare(cfg, pooled_workspace(root), sources)
    return {**summary, "slots": [e["slot"] for e in entries]}


def compare_reruns(root: Path, a: str, b: str) -> list[tuple[str, float, float, float]]:
    """(metric, value in a, value in b, b - a) for the headline numbers of two reruns."""
    entries = {e["slot"]: e for e in read_ledger(root)}
    missing = [s for s in (a, b) if s not in entries]
    if missing:
        raise KeyError(f"no rerun {', '.join(missing)} in {ledger_path(root)}; known: {', '.join(entries) or 'none'}")
    rows = []
    for group in ("test_return", "gap"):
        for cell, va in entries[a][group].items():
            vb = entries[b][group].get(cell)
            if vb is not None:
                rows.append((f"{group}[{cell}]", va, vb, vb - va))
    for name, ca in entries[a]["contrasts"].items():
        if (cb := entries[b]["contrasts"].get(name)) is not None:
            rows.append((f"diff[{name}]", ca["diff"], cb["diff"], cb["diff"] - ca["diff"]))
    return rows
