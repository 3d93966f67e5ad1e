"""Daily price series from a CSV of dates and closes, or from the data sets shipped in `arch`.

A price file is read whole with pandas, every cell as text, then checked row by
row so that an error names the file, the line and the problem. Lines are
counted as in a text editor: the header is line 1, the first data row line 2
(a quoted cell spanning lines would shift the count; price files have none).

Conventions:

* A missing price (empty cell, ".", "NA", "NaN", "null", any case) drops its
  row and is counted in `PriceSeries.dropped`; a wholly blank line is skipped
  and not counted. Every other defect raises `PriceDataError`.
* Dates are checked on every row, dropped ones included: a row whose date is
  broken or out of order means a broken file, whatever its price.
* One date format per file, chosen deterministically: ISO `%Y-%m-%d` if it
  reads the first row, else US `%m/%d/%Y`.
* Returns are log returns, r[i] = log(p[i+1] / p[i]), dated by their end day.
  Dropped rows are not filled: a return across a gap spans the whole gap.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DATASETS", "PriceDataError", "PriceSeries", "dataset_path", "load_dataset", "log_returns", "read_price_csv"]

#: data sets of `arch.data` that are daily price series -> their default price column (None: Adj Close, else Close)
DATASETS: dict[str, str | None] = {"sp500": None, "nasdaq": None, "wti": "DCOILWTICO"}

#: how a missing price is written (compared after stripping blanks, case-insensitively)
MISSING = frozenset({"", ".", "na", "nan", "null"})

#: tried in this order; the first that reads the first row is used for the whole file
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y")


class PriceDataError(ValueError):
    """A price file that cannot be read as a series of dates and positive prices."""


@dataclass(frozen=True)
class PriceSeries:
    """Dates and prices of one instrument, strictly increasing in date."""

    dates: np.ndarray  # (n,) datetime64[D]
    prices: np.ndarray  # (n,) float64, all > 0
    dropped: int  # rows dropped for a missing price
    source: str  # where it came from, for messages

    def __len__(self) -> int:
        return len(self.prices)


# --------------------------------------------------------------------- reading
def _fail(path: Path, problem: str, line: int | None = None) -> PriceDataError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return PriceDataError(f"{where}: {problem}")


def _read_text_frame(path: Path) -> pd.DataFrame:
    """Every cell as stripped text; blank lines kept as empty rows so row i sits on line i + 2."""
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise _fail(path, f"not a readable CSV ({str(e).strip()})") from e
    df.columns = [str(c).strip() for c in df.columns]
    return df.fillna("").apply(lambda col: col.str.strip())  # a short row's absent cells read as empty


def _pick_column(df: pd.DataFrame, path: Path, wanted: str | None, role: str) -> str:
    """The name of the column to read; `wanted=None` means Adj Close, else Close."""
    candidates = [wanted] if wanted is not None else ["Adj Close", "Close"]
    for name in candidates:
        if name in df.columns:
            return name
    asked = repr(wanted) if wanted is not None else "'Adj Close' or 'Close'"
    raise _fail(path, f"no {role} column {asked}; columns present: {list(df.columns)}")


def _parse_dates(text: pd.Series, path: Path, lines: np.ndarray) -> np.ndarray:
    """(n,) datetime64[D] from one format for the whole column (see DATE_FORMATS)."""
    fmt = next((f for f in DATE_FORMATS if not pd.isna(pd.to_datetime(text.iloc[0], format=f, errors="coerce"))),
               DATE_FORMATS[0])
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = bad[0]
        raise _fail(path, f"unparsable date {text.iloc[i]!r} (this file's dates are read as {fmt}, "
                          f"the format of its first row; accepted formats: {', '.join(DATE_FORMATS)})", lines[i])
    return parsed.to_numpy().astype("datetime64[D]")


def _check_increasing(dates: np.ndarray, path: Path, lines: np.ndarray) -> None:
    step = np.diff(dates)  # (n - 1,) timedelta64[D]
    bad = np.flatnonzero(step <= np.timedelta64(0, "D"))
    if bad.size:
        i = bad[0] + 1  # the row that breaks the order
        earlier = f"{dates[i - 1]} on line {lines[i - 1]}"
        if step[bad[0]] == np.timedelta64(0, "D"):
            raise _fail(path, f"duplicate date {dates[i]} (also {earlier})", lines[i])
        raise _fail(path, f"dates not strictly increasing (unsorted): {dates[i]} comes after {earlier}", lines[i])


def _parse_prices(text: pd.Series, path: Path, lines: np.ndarray) -> np.ndarray:
    """(n,) float64 prices, each finite and > 0."""
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise _fail(path, f"non-numeric price {text.iloc[bad[0]]!r}", lines[bad[0]])
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise _fail(path, f"non-positive price {text.iloc[bad[0]]!r}", lines[bad[0]])
    return values


def read_price_csv(path: str | Path, date_column: str = "Date", price_column: str | None = None) -> PriceSeries:
    """Read a CSV (optionally gzipped) of dates and prices, checking every row.

    Args:
        path: the file; `.gz` is decompressed by pandas.
        date_column: header of the date column.
        price_column: header of the price column; None takes "Adj Close" if present, else "Close".

    Returns:
        The series, rows with a missing price dropped and counted.

    Raises:
        PriceDataError: naming the file, the line (header = line 1) and the problem.
    """
    path = Path(path)
    df = _read_text_frame(path)
    date_col = _pick_column(df, path, date_column, "date")
    price_col = _pick_column(df, path, price_column, "price")
    lines = np.arange(len(df)) + 2  # (rows,) line of each row in the file
    keep = (df != "").any(axis=1).to_numpy()  # wholly blank lines carry no observation
    df, lines = df[keep], lines[keep]
    if df.empty:
        raise _fail(path, "no data rows")
    dates = _parse_dates(df[date_col], path, lines)
    _check_increasing(dates, path, lines)
    present = ~df[price_col].str.lower().isin(MISSING).to_numpy()
    prices = _parse_prices(df[price_col][present], path, lines[present])
    return PriceSeries(dates=dates[present], prices=prices, dropped=int((~present).sum()), source=str(path))


# ------------------------------------------------------------- shipped data sets
def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; allowed: {sorted(DATASETS)}")


def dataset_path(name: str) -> Path:
    """The `*.csv.gz` file shipped in the `arch.data.<name>` package (hash its bytes to pin the data).

    Found without importing `arch`: its `__init__` imports scipy and statsmodels
    (about 1 s), and a rerun reads only this file's bytes.
    """
    _check_dataset(name)
    spec = importlib.util.find_spec("arch")  # finds the package, runs none of it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the arch package is not installed: its data sets ship with it")
    folder = Path(spec.submodule_search_locations[0]) / "data" / name
    files = sorted(folder.glob("*.csv.gz"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one *.csv.gz in {folder}, found {[f.name for f in files]}")
    return files[0]


def load_dataset(name: str, price_column: str | None = None) -> PriceSeries:
    """One of the daily series shipped in `arch.data` ("sp500", "nasdaq", "wti"), read by `read_price_csv`.

    Args:
        name: the data set.
        price_column: overrides the data set's default column (Adj Close for sp500/nasdaq, DCOILWTICO for wti).

    Returns:
        The series; for wti, `dropped` counts its missing days.
    """
    _check_dataset(name)
    return read_price_csv(dataset_path(name), price_column=price_column or DATASETS[name])


def log_returns(series: PriceSeries) -> tuple[np.ndarray, np.ndarray]:
    """(dates[1:], r) with r[i] = log(p[i+1] / p[i]), each return dated by the day it ends."""
    return series.dates[1:], np.diff(np.log(series.prices))
