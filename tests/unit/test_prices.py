"""Price files and the arch data sets (neural_trader.markets.prices): parsing, every error message, log returns."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neural_trader.markets.prices import (DATASETS, PriceDataError, PriceSeries, dataset_path, load_dataset, log_returns, read_price_csv)


def write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------- good files
def test_iso_dates_and_close_column(tmp_path):
    s = read_price_csv(write(tmp_path, "Date,Close\n2020-01-02,10\n2020-01-03,11\n2020-01-06,12.5\n"))
    assert s.dates.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(s.dates, np.array(["2020-01-02", "2020-01-03", "2020-01-06"], "datetime64[D]"))
    np.testing.assert_array_equal(s.prices, [10.0, 11.0, 12.5])
    assert s.prices.dtype == np.float64 and s.dropped == 0 and len(s) == 3
    assert s.source.endswith("prices.csv")


def test_us_dates_and_adj_close_preferred(tmp_path):
    s = read_price_csv(write(tmp_path, "Date,Close,Adj Close\n1/2/2020,10,5\n1/3/2020,11,6\n12/31/2020,12,7\n"))
    np.testing.assert_array_equal(s.dates, np.array(["2020-01-02", "2020-01-03", "2020-12-31"], "datetime64[D]"))
    np.testing.assert_array_equal(s.prices, [5.0, 6.0, 7.0])


def test_named_columns(tmp_path):
    s = read_price_csv(write(tmp_path, "day,px\n2020-01-02,3\n2020-01-03,4\n"), date_column="day", price_column="px")
    np.testing.assert_array_equal(s.prices, [3.0, 4.0])


@pytest.mark.parametrize("marker", ["", ".", "NA", "NaN", "null", "nan", "NULL"])
def test_missing_markers_drop_and_count(tmp_path, marker):
    s = read_price_csv(write(tmp_path, f"Date,Close\n2020-01-02,1\n2020-01-03,{marker}\n2020-01-06,3\n"
                                       f"2020-01-07,{marker}\n"))
    np.testing.assert_array_equal(s.prices, [1.0, 3.0])
    np.testing.assert_array_equal(s.dates, np.array(["2020-01-02", "2020-01-06"], "datetime64[D]"))
    assert s.dropped == 2


def test_blank_lines_skipped_and_gzip_read(tmp_path):
    path = tmp_path / "p.csv.gz"
    path.write_bytes(gzip.compress(b"Date,Close\n2020-01-02,1\n\n2020-01-03,2\n\n"))
    s = read_price_csv(path)
    np.testing.assert_array_equal(s.prices, [1.0, 2.0])
    assert s.dropped == 0


# ------------------------------------------------------------------- bad files
def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(PriceDataError) as info:
        read_price_csv(path, **kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "file not found" in error_of(tmp_path / "nope.csv")


def test_missing_price_column_lists_columns(tmp_path):
    msg = error_of(write(tmp_path, "Date,Open\n2020-01-02,1\n"))
    assert "'Adj Close' or 'Close'" in msg and "['Date', 'Open']" in msg


def test_missing_named_columns(tmp_path):
    path = write(tmp_path, "Date,Close\n2020-01-02,1\n")
    msg = error_of(path, price_column="Last")
    assert "no price column 'Last'" in msg and "['Date', 'Close']" in msg
    assert "date column 'When'" in error_of(path, date_column="When")


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("Date,Close\n2020-01-02,1\n2020-13-45,2\n", 3, "unparsable date '2020-13-45'"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,2\n1/6/2020,3\n", 4, "unparsable date '1/6/2020'"),  # formats mixed
    ("Date,Close\nyesterday,1\n", 2, "unparsable date 'yesterday'"),
    ("Date,Close\n2020-01-02,1\n,2\n", 3, "unparsable date ''"),
    ("Date,Close\n2020-01-02,1\n2020-01-06,2\n2020-01-03,3\n", 4, "not strictly increasing (unsorted)"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,2\n2020-01-03,3\n", 4, "duplicate date 2020-01-03 (also 2020-01-03 on line"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,.\n2020-01-03,3\n", 4, "duplicate date"),  # dropped rows are dated too
    ("Date,Close\n2020-01-02,1\n2020-01-03,abc\n", 3, "non-numeric price 'abc'"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,inf\n", 3, "non-numeric price 'inf'"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,0\n", 3, "non-positive price '0'"),
    ("Date,Close\n2020-01-02,1\n\n2020-01-03,-2\n", 4, "non-positive price '-2'"),  # a blank line still counts
])
def test_bad_rows_name_file_line_and_problem(tmp_path, text, line, problem):
    msg = error_of(write(tmp_path, text))
    assert f"line {line}:" in msg
    assert problem in msg


def test_no_data_rows(tmp_path):
    assert "no data rows" in error_of(write(tmp_path, "Date,Close\n"))


def test_ragged_row_is_a_csv_error(tmp_path):
    msg = error_of(write(tmp_path, "Date,Close\n2020-01-02,1\n2020-01-03,2,3\n"))
    assert "not a readable CSV" in msg and "line 3" in msg


# ------------------------------------------------------------------- arch data
def test_sp500_loads():
    s = load_dataset("sp500")
    assert len(s) == 5031 and s.dropped == 0
    assert s.dates[0] == np.datetime64("1999-01-04") and s.dates[-1] == np.datetime64("2018-12-31")
    assert s.prices[0] == pytest.approx(1228.099976)  # Adj Close of 1999-01-04


def test_nasdaq_and_column_override():
    s = load_dataset("nasdaq")
    assert len(s) == 5031 and s.prices[0] == pytest.approx(2208.050049)
    assert load_dataset("nasdaq", price_column="Open").prices[0] == pytest.approx(2207.540039)


def test_wti_drops_missing_days():
    s = load_dataset("wti")
    assert s.dropped == 290 and len(s) == 8611 - 290
    assert s.dates[0] == np.datetime64("1986-01-02") and np.all(np.diff(s.dates) > np.timedelta64(0, "D"))


def test_unknown_dataset_names_allowed():
    with pytest.raises(ValueError, match=r"'vix'.*\['nasdaq', 'sp500', 'wti'\]"):
        load_dataset("vix")
    with pytest.raises(ValueError, match="allowed"):
        dataset_path("crude")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_path_is_the_shipped_file(name):
    path = dataset_path(name)
    assert path.name == f"{name}.csv.gz" and path.parent.name == name
    assert len(hashlib.sha256(path.read_bytes()).hexdigest()) == 64


# ------------------------------------------------------------------- returns
def test_log_returns_are_dated_by_their_end():
    s = PriceSeries(np.array(["2020-01-02", "2020-01-03", "2020-01-06"], "datetime64[D]"),
                    np.array([100.0, 110.0, 99.0]), 0, "test")
    dates, r = log_returns(s)
    np.testing.assert_array_equal(dates, s.dates[1:])
    np.testing.assert_allclose(r, [np.log(1.1), np.log(0.9)])


def test_dataset_path_imports_no_arch_and_is_arch_s_own_file():
    """A rerun reads the file's bytes only: finding it must not import arch (scipy, statsmodels: about 1 s)."""
    code = ("import sys; from neural_trader.markets.prices import dataset_path; p = dataset_path('sp500'); "
            "print('arch' in sys.modules); import arch.data.sp500 as d; print(p.parent == Path(d.__file__).parent)")
    out = subprocess.run([sys.executable, "-c", f"from pathlib import Path; {code}"], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["False", "True"]
