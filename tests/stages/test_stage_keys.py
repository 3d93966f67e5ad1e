"""A stage key follows the code it names: editing a module re-keys exactly the stages that list it.

The keys are computed in a fresh interpreter whose working directory is a
copy of the code (so `python -c` imports the copy, not the checkout), before
and after one edit of the copy; the params, the workspace and every input stay
the same, so only the code can move a key. The study's stages are keyed (a
warm-up stage's key locates its modules under neural_trader.warmups, whose
package imports torch: seconds per interpreter); their code lists are built
the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages.registry import STUDY_STAGES
from tests.conftest import ROOT

KEYS = """
import json, sys
from pathlib import Path
import stages.registry as registry
from stages.catalog import Workspace, load_params
assert Path(registry.__file__).resolve().is_relative_to(Path.cwd().resolve()), registry.__file__
cfg, ws = load_params(sys.argv[1]), Workspace(Path(sys.argv[2]))
print(json.dumps({f"{spec.name}@{registry.item_id(item)}": registry.stage_key(spec.name, cfg, ws, item)
                  for spec in registry.STUDY_STAGES for item in spec.grid(cfg)}))
"""


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("code")
    for package in ("neural_trader", "stages"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _keys(code: Path) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", KEYS, str(ROOT / "params.yaml"), str(code / "ws")], cwd=code,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {name.split("@")[0] for name in before if before[name] != after[name]}


@pytest.mark.parametrize("module", ["neural_trader.models", "neural_trader.synthetic.sources", "stages.registry"])
def test_editing_a_module_rekeys_exactly_the_stages_that_list_it(code, module):
    path = code / Path(*module.split(".")).with_suffix(".py")
    original = path.read_text()
    before = _keys(code)
    try:
        path.write_text(original + "\n# an edit: one comment line\n")
        after = _keys(code)
    finally:
        path.write_text(original)
    every = module == "stages.registry"  # in every stage's key, like the catalog
    expected = {spec.name for spec in STUDY_STAGES if every or module in spec.code}
    assert expected and _changed(before, after) == expected
    assert _keys(code) == before  # the edit undone, the keys are back


def test_the_synthetic_train_section_does_not_key_the_market_stages(shrunk_params, tmp_path):
    """Markets own their training knobs: train.* re-keys the synthetic train stage only; markets.lr the market one."""
    from stages.catalog import Workspace, load_params
    from stages.registry import stage_key

    ws = Workspace(tmp_path)
    base = load_params(shrunk_params)
    item, cell = {"market": "sp500", "model": "base"}, {"regime": "momentum", "model": "base"}
    for override in ("train.epochs=7", "train.lr=0.02", "train.batch_size=500"):
        changed = load_params(shrunk_params, [override])
        assert stage_key("market_train", changed, ws, item) == stage_key("market_train", base, ws, item), override
        assert stage_key("train", changed, ws, cell) != stage_key("train", base, ws, cell), override
    for override in ("markets.lr=0.02", "markets.batch_size=500", "markets.epochs=7"):
        changed = load_params(shrunk_params, [override])
        assert stage_key("market_train", changed, ws, item) != stage_key("market_train", base, ws, item), override
