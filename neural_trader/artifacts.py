"""What the Prefect UI shows of a report: figures inlined as small PNGs, tables narrow enough for its column.

The UI renders a Markdown artifact in a text column of about 700 px and
resolves a relative image link against its own URL, so the report files'
`../plots/<figure>.png` links show only their alt text there. An artifact
therefore carries each figure as a `data:` URI of the PNG quantised to a
256-colour palette (`shrink_png`), and splits a wide table into narrow ones
(`markdown_table`, `table_widths`). The report files on disk keep their links.
Nothing here reads or writes a file.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["shrink_png", "data_uri", "inline_figures", "markdown_table", "table_widths", "COLUMN_PX"]

#: the width of the UI's text column that a table must fit, in px
COLUMN_PX = 700
#: a table's laid-out width, unwrapped: px a character of its widest cells, px a column of padding. Fitted to
#: the two tables the UI was seen to overflow: the cells table (158 characters, 11 columns) at 1,418 px, the
#: market table (228 characters, 14 columns) at 1,933 px
PX_PER_CHAR, PX_PER_COLUMN = 4.8, 60


def shrink_png(png: bytes, colors: int = 256) -> bytes:
    """`png` quantised to a palette of `colors` (no dithering: flat plot colours stay flat), or `png` if smaller.

    matplotlib writes 8-bit RGBA; a plot has a few flat colours and
    anti-aliased edges, which a 256-colour palette keeps to the eye. The
    result is deterministic: the same bytes in, the same bytes out.
    """
    from PIL import Image  # imported here: only the publishing tasks need Pillow

    with Image.open(io.BytesIO(png)) as image:
        paletted = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.NONE)
    out = io.BytesIO()
    paletted.save(out, format="PNG", optimize=True)
    return min(out.getvalue(), png, key=len)


def data_uri(png: bytes) -> str:
    """A PNG as a `data:image/png;base64,...` URI, for a Markdown image link."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def inline_figures(figures: Mapping[str, bytes]) -> dict[str, str]:
    """name -> PNG bytes as name -> the data URI of the shrunk PNG, for an artifact's image links."""
    return {name: data_uri(shrink_png(png)) for name, png in figures.items()}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: header, rule, one line per row (cells as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def table_widths(lines: Sequence[str]) -> list[float]:
    """Each Markdown table's width in px, as the UI lays it out without wrapping (estimated: PX_PER_CHAR).

    A column is as wide as its widest cell (header included) plus its padding;
    a table is the sum. Tables are runs of lines that start with '|'; the rule
    line under the header is skipped.
    """
    widths, table = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                table.append([c.strip() for c in line.strip().strip("|").split(" | ")])
            continue
        if table:
            cols = max(map(len, table))
            chars = sum(max(len(r[i]) for r in table if i < len(r)) for i in range(cols))
            widths.append(PX_PER_CHAR * chars + PX_PER_COLUMN * cols)
            table = []
    return widths
