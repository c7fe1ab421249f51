"""`python -m shared.profile build`, run as an operator runs it: a subprocess of this interpreter, in the
repository, on a CSV in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.drift.profile import CategoricalColumn, NumericColumn, Profile, profile_from_bytes

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.profile", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def training(tmp_path: Path) -> Path:
    """200 rows: carat (numbers), cut (words), code (numbers with 10% text: categorical), depth (numbers with
    1% text: numeric, those cells invalid), price (the label)."""
    lines = ["carat,cut,code,depth,price"]
    for index in range(200):
        code = "n/a" if index % 10 == 0 else ("x1" if index % 10 == 1 else str(100 + index % 7))
        depth = "deep" if index % 100 == 0 else f"{60 + index % 5}.5"
        cut = ["Ideal", "Premium", "Good"][index % 3]
        lines.append(f"{0.2 + index / 100:.2f},{cut},{code},{depth},{300 + index * 10}")
    path = tmp_path / "training.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def built(out: Path) -> Profile:
    return profile_from_bytes(out.read_bytes())


def test_build_writes_a_profile_that_loads(training: Path, tmp_path: Path) -> None:
    out = tmp_path / "reference.json"
    result = run("build", training, "--out", out, "--prediction-column", "price")
    assert result.returncode == 0, result.stderr
    profile = built(out)
    assert (profile.rows, profile.source) == (200, "training.csv")
    assert list(profile.columns) == ["carat", "cut", "code", "depth"]
    carat, cut, code, depth = profile.columns.values()
    assert isinstance(carat, NumericColumn)
    assert (len(carat.edges), sum(carat.counts), carat.min, carat.max) == (9, 200, 0.2, 2.19)
    assert isinstance(cut, CategoricalColumn)
    assert (cut.categories, cut.counts, cut.complete) == (
        ("Ideal", "Premium", "Good"),
        [67, 67, 66],
        True,
    )  # most first
    assert isinstance(code, CategoricalColumn)  # 20 of 180 non-null cells are text: not a number column
    assert (code.nulls, "x1" in code.categories) == (20, True)
    assert isinstance(depth, NumericColumn)  # 2 of 200 are text: numbers, those two invalid
    assert (depth.count, depth.invalid) == (198, 2)
    assert isinstance(profile.prediction, NumericColumn)
    assert (profile.prediction.count, profile.prediction.min, profile.prediction.max) == (200, 300.0, 2290.0)

    progress = result.stderr.splitlines()
    assert "pass 1 of 2 (bins): done, 200 rows" in progress
    assert "pass 2 of 2 (counts): done, 200 rows" in progress
    assert progress[-1] == (
        f"{out}: 200 rows; features carat (numeric), cut (categorical), code (categorical), depth (numeric)"
    )
    assert result.stdout == ""


def test_without_a_prediction_column_every_column_is_a_feature(training: Path, tmp_path: Path) -> None:
    out = tmp_path / "reference.json"
    result = run("build", training, "--out", out, "--bins", "4", "--top", "2", "--categorical", "carat")
    assert result.returncode == 0, result.stderr
    profile = built(out)
    assert profile.prediction is None
    assert list(profile.columns) == ["carat", "cut", "code", "depth", "price"]
    carat, cut, price = profile.columns["carat"], profile.columns["cut"], profile.columns["price"]
    assert isinstance(carat, CategoricalColumn)
    assert (len(carat.categories), carat.complete) == (2, False)
    assert isinstance(cut, CategoricalColumn)
    assert (cut.categories, cut.other, cut.complete) == (("Ideal", "Premium"), 66, False)
    assert isinstance(price, NumericColumn)
    assert len(price.edges) == 3


@pytest.mark.parametrize(
    ("content", "arguments", "message"),
    [
        pytest.param(
            None,
            ("--prediction-column", "nope"),
            "error: training.csv has no column 'nope' (its columns: carat, cut, code, depth, price)",
            id="a missing prediction column",
        ),
        pytest.param(None, ("--categorical", "colour"), "error: training.csv has no column 'colour'", id="categorical"),
        pytest.param(
            "carat,cut\n",
            (),
            "error: training.csv has no rows of its header's width: a reference needs a header and rows",
            id="a header only",
        ),
        pytest.param(
            "carat,cut\n1\n2,b,c\n",
            (),
            "error: training.csv has no rows of its header's width",
            id="rows of other widths",
        ),
        pytest.param("", (), "error: training.csv is empty: a reference needs a header and rows", id="an empty file"),
        pytest.param(None, ("--bins", "1"), "error: --bins must be 2-100 and --top 1-1000", id="one bin"),
    ],
)
def test_a_file_that_cannot_be_a_reference_is_exit_2_with_a_message(
    training: Path, tmp_path: Path, content: str | None, arguments: tuple[str, ...], message: str
) -> None:
    if content is not None:
        training.write_text(content, encoding="utf-8")
    out = tmp_path / "reference.json"
    result = run("build", training, "--out", out, *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run("build", tmp_path / "nowhere.csv", "--out", tmp_path / "reference.json")
    assert result.returncode == 2
    assert f"error: no file {tmp_path / 'nowhere.csv'}" in result.stderr
    assert not (tmp_path / "reference.json").exists()
