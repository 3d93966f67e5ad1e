"""dvc.yaml, generated from the stage registry: `neural-trader dvc-yaml` writes it, `--check` compares.

Each registry stage becomes a DVC stage running `python -m flows.cli stage NAME`:
a stage over one params dict iterates it with `foreach`, a stage over two with
`matrix`, so a regime, model or market added in params.yaml becomes stages
without editing dvc.yaml. Its deps are the code files its stamp key hashes and
its inputs (or the folders it depends on whole); its params are the granular
keys of its key; its outputs are declared by kind:

- datasets, models and evaluations: DVC's cache (`outs`);
- summaries and reports read by `dvc metrics`: `metrics`, kept in git;
- figures and per-epoch curves: `plots`, kept in git;
- every other file (the comparison's JSON, tables and report): `outs`, kept in git.

The same command writes the end of .gitignore: every cached out, its
placeholders as `*`, so the outputs a flow writes are git-ignored as after
`dvc repro` (DVC git-ignores a cached out only when a DVC command writes it,
and writes no entry of its own for a path git already ignores).

`python -m` runs the code of the workspace, the files DVC hashes, not whichever
checkout the virtual environment was installed from: a clone or a
`dvc exp run --queue` copy runs the code it versions.
"""

from __future__ import annotations

import re
from pathlib import Path

from neural_trader.params import StudyConfig, parse_config

from .catalog import Workspace
from .registry import GRIDS, STAGES, SWEEP_STAGES, Stage, code_files

__all__ = ["render_dvc_yaml", "render_gitignore", "render_sweep_dvc_yaml"]

HEADER = """\
# The study's DAG for `dvc repro` / `dvc exp run`: the same stages as the Prefect flows, each running
# the same stage body through `python -m flows.cli stage NAME`.
#
# GENERATED from stages/registry.py by `neural-trader dvc-yaml`: edit the registry, then rerun it
# (tests/stages/test_dvc_wiring.py fails while this file and the registry disagree). See stages/dvcfile.py
# for how each stage's deps, params and outs are declared.
stages:
"""

#: the overlay of every cell's validation curve: the long table from compare, a panel per regime and a colour
#: per model from its `cell` column through the template .dvc/plots/cells.json, so a new cell needs no edit
TOP_PLOTS = """
# Validation return per epoch of every cell: a panel per regime at its own scale, a line per model, and one
# dash pattern per revision under `dvc plots diff`.
plots:
  - metrics/comparison/valid_return.tsv:
      template: cells
      x: epoch
      y: valid_return
      title: Validation return per epoch, mean over seeds, a panel per regime
      x_label: epoch
      y_label: return per step (position x next return)
"""

METRICS = ("summary.json", "headline.json", "report.json", "data.json", "sweep.json")


def _kind(path: str) -> str:
    """How dvc.yaml declares an output: 'cached', 'metric', 'plot' or 'out' (kept in git)."""
    if path.endswith(".safetensors") or path.startswith("metrics/evaluate/"):
        return "cached"
    if path.rsplit("/", 1)[-1] in METRICS:
        return "metric"
    if path.endswith((".png", "/history.tsv")) or path.startswith("plots/"):
        return "plot"
    return "out"


def _placeholders(spec: Stage) -> tuple[dict[str, str], list[str]]:
    """The item DVC's templating gives the stage, and the lines that iterate it (foreach or matrix)."""
    axes = GRIDS[spec.items]
    if len(axes) == 1:
        (key, path), = axes.items()
        return {key: "${key}"}, [f"foreach: ${{{path}}}", "do:"]
    lines = ["matrix:", *(f"  {key}: ${{{path}}}" for key, path in axes.items())] if axes else []
    return {key: f"${{item.{key}}}" for key in axes}, lines


#: where the code lives: code deps are named relative to the project, as DVC runs them
PROJECT = Path(__file__).resolve().parents[1]


def _stage(spec: Stage, cfg: StudyConfig, data: list[str] | None = None, wdir: str | None = None) -> list[str]:
    """A stage's lines; `data`: its deps besides its code (default: its tracked folders, or its inputs)."""
    ws = Workspace(PROJECT)
    item, head = _placeholders(spec)
    body: list[str] = [f"cmd: python -m flows.cli stage {spec.name}" + "".join(f" --{k} {v}" for k, v in item.items())]
    body += [f"wdir: {wdir}"] if wdir else []
    code = sorted(p.resolve().relative_to(PROJECT).as_posix() for p in code_files(spec))
    if data is None:
        data = list(spec.tracked) or [ws.rel(p) for p in spec.inputs(cfg, ws, item)]
    body += ["deps:", *(f"  - {d}" for d in code + data)]
    if params := spec.params(cfg, item):
        body += ["params:", *(f"  - {p}" for p in params)]
    outs = _outs(spec, cfg)
    for section, kinds in (("outs", ("cached", "out")), ("metrics", ("metric",)), ("plots", ("plot",))):
        mine = [o for o in outs if _kind(o) in kinds]
        if mine:
            body.append(f"{section}:")
        for out in mine:
            if _kind(out) == "cached":
                body.append(f"  - {out}")
                continue
            body += [f"  - {out}:", "      cache: false"]
            props = spec.plots.get(out.rsplit("/", 1)[-1], {})
            body += [f"      {k}: {v.format(cell='-'.join(item.values()))}" for k, v in props.items()]
    indent = "    " if head[:1] and head[0].startswith("foreach") else "  "
    lines = [f"  # {line}" for line in _wrap(spec.note)] + [f"  {spec.name}:"]
    return lines + [f"    {h}" for h in head] + [f"  {indent}{b}" for b in body]


def _outs(spec: Stage, cfg: StudyConfig) -> list[str]:
    """The stage's outputs as dvc.yaml names them: relative paths, ${...} placeholders for its item."""
    ws = Workspace(PROJECT)
    return [ws.rel(p) for p in spec.outputs(cfg, ws, _placeholders(spec)[0])]


def _wrap(text: str, width: int = 104) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def render_dvc_yaml() -> str:
    """The text of dvc.yaml: every registry stage, in registry order."""
    cfg = parse_config({})  # placeholders stand for every name, so the defaults serve every params file
    blocks = ["\n".join(_stage(spec, cfg)) for spec in STAGES.values()]
    return HEADER + "\n\n".join(blocks) + "\n" + TOP_PLOTS


SWEEP_HEADER = """\
# The sweep's report for `dvc repro sweeps/dvc.yaml`: the sweep_report stage over the grid points this
# workspace computed, run from the project's root (wdir: ..) through `python -m flows.cli stage sweep_report`.
#
# GENERATED by `neural-trader run sweep --dvc-record` for the grid it ran (stages/dvcfile.py): every computed
# point's folder is `dvc add`ed (sweeps/<point>.dvc), sweeps/failures.json records the failed ones. Not in
# ./dvc.yaml: these deps exist only where a sweep ran. A new grid: run the sweep again.
stages:
"""


def render_sweep_dvc_yaml(cfg: StudyConfig, points: list[str]) -> str:
    """The text of sweeps/dvc.yaml: the sweep_report stage over the folders of `points` (the computed ones)."""
    ws = Workspace(PROJECT)
    data = [*(ws.rel(ws.sweep_point(p)) for p in points), ws.rel(ws.sweep_failures)]
    return SWEEP_HEADER + "\n".join(_stage(SWEEP_STAGES["sweep_report"], cfg, data=data, wdir="..")) + "\n"


#: the line that opens .gitignore's generated block: `neural-trader dvc-yaml` rewrites everything below it
IGNORE_MARK = "# GENERATED by `neural-trader dvc-yaml` from stages/registry.py, do not edit below:"

IGNORE_NOTE = """\
# dvc.yaml's cached outs (datasets, models, evaluations), each placeholder a `*`: ignored whichever door
# wrote them, so DVC adds no .gitignore of its own. The cache: false outs (metrics, figures, reports) are
# for git to track.
"""


def render_gitignore(current: str) -> str:
    """.gitignore's text: `current` up to its generated block, then every cached out of dvc.yaml as a pattern
    (a name DVC would fill in, such as a regime's, as `*`: a regime added in params.yaml is ignored too)."""
    cfg = parse_config({})
    cached = {re.sub(r"\$\{[^}]+\}", "*", out) for spec in STAGES.values()
              for out in _outs(spec, cfg) if _kind(out) == "cached"}
    head = current.split(IGNORE_MARK)[0].rstrip("\n")
    block = IGNORE_MARK + "\n" + IGNORE_NOTE + "".join(f"/{p}\n" for p in sorted(cached))
    return (head + "\n\n" if head else "") + block
