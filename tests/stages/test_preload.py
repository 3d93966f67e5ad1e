"""stages.run.preload_bodies: the bodies' modules are imported ahead only when some stage has no stamp."""

from __future__ import annotations

from stages.catalog import Workspace
from stages.registry import ALL_STAGES, STUDY_STAGES, item_id
from stages.run import preload_bodies


def test_bodies_load_ahead_only_when_a_stamp_is_missing(tmp_path, shrunk_cfg):
    ws, names = Workspace(tmp_path), [s.name for s in STUDY_STAGES]
    stamps = [ws.stamp(s, item_id(i)) for s in names for i in ALL_STAGES[s].grid(shrunk_cfg)]
    for stamp in stamps:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text("{}")
    assert preload_bodies(shrunk_cfg, ws, names) == []  # a rerun checks keys: no torch to import

    stamps[0].unlink()
    loaded = preload_bodies(shrunk_cfg, tmp_path, names)
    bodies = {n.partition(":")[0] for s in STUDY_STAGES for n in (s.body, s.join) if n}
    assert set(loaded) == bodies and "stages.study" in loaded
