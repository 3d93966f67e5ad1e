"""The sweep: a grid of studies over params keys, each a dropout contrast, under FDR control.

Modules: `points` (the `sweep` section and its grid), `names`, `report` (contrasts and their adjustment),
`verdicts`, `plots`.
"""
