"""The browser check itself (`tests/browser.py`), on two markdown artifacts published to the session's server:
one a reader sees whole, one with a broken image link and a table too wide for the text column.
The same parts are in both, so the check is seen to pass each good part and to name each bad one."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from tests.browser import check_artifact

#: a narrow table: what the report's tables should look like
NARROW = "| cell | test return |\n|---|---|\n| momentum-base | 0.0312 (0.0297 to 0.0327) |\n"
#: 14 columns of numbers that cannot wrap: wider than either UI's text column at 1280 px
WIDE = ("| " + " | ".join(f"metric {i}" for i in range(14)) + " |\n|" + "---|" * 14 + "\n| "
        + " | ".join(f"{-0.000183 * i:.9f}" for i in range(14)) + " |\n")


def _png_uri() -> str:
    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, np.linspace(0, 1, 8 * 16).reshape(8, 16), format="png")  # (8, 16) px
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def published(prefect_server) -> dict[str, str]:
    """{"good": artifact id, "bad": artifact id}, published by one run of a tiny flow."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    inline = f"![a figure inlined]({_png_uri()})"
    pages = {"good": f"# Whole\n\n{inline}\n\n{NARROW}",
             "bad": f"# Broken\n\n{inline}\n\n![a figure linked](../plots/x.png)\n\n{NARROW}\n{WIDE}"}

    @flow(name="artifact-pages-probe")
    def publish() -> dict[str, str]:
        return {name: str(create_markdown_artifact(md, key=f"{name}-page")) for name, md in pages.items()}

    return publish()


@pytest.mark.slow
def test_a_whole_artifact_shows_whole(chromium, prefect_server, published, tmp_path):
    problems = check_artifact(prefect_server.removesuffix("/api"), published["good"], chromium, tmp_path)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.slow
def test_each_broken_part_of_an_artifact_is_named(chromium, prefect_server, published, tmp_path):
    problems = check_artifact(prefect_server.removesuffix("/api"), published["bad"], chromium, tmp_path)
    assert [(p.ui, p.kind, p.what) for p in problems] == [
        (ui, kind, what) for ui in ("v1", "v2")
        for kind, what in (("image", "../plots/x.png"), ("table", "table 2 (14 columns)"))
    ], "\n".join(map(str, problems))
    assert all(p.shot and p.shot.is_file() for p in problems)
