"""The synthetic study: regimes of known law (noise, momentum), the Bayes oracle, paired contrasts across cells.

Modules: `config` (sections data, models, train, compare), `sources` (regimes and their oracles),
`metrics` (one cell's evaluation), `contrasts`, `comparison` (across cells), `report`.
"""
