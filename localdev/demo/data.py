"""A deterministic synthetic diamonds data set: the 4Cs (carat, cut, color, clarity) drive the price."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CUTS = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
COLORS = ["J", "I", "H", "G", "F", "E", "D"]
CLARITIES = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]
FEATURES = ["carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z"]
TARGET = "price"
#: The training population: the median stone weighs about 0.7 carat; most cuts are Ideal or Premium.
CARAT_LOG_MEAN = -0.35
CUT_SHARES = (0.03, 0.09, 0.22, 0.26, 0.40)
#: A drifted population (localdev/demo/diamonds-shifted.csv): stones about 1.8 times heavier (so larger x, y,
#: z too) and mostly Fair and Good cuts; color, clarity, depth and table as in training.
SHIFTED_CARAT_LOG_MEAN = 0.25
SHIFTED_CUT_SHARES = (0.30, 0.30, 0.20, 0.12, 0.08)


def generate(
    rows: int,
    seed: int = 7,
    *,
    carat_log_mean: float = CARAT_LOG_MEAN,
    cut_shares: Sequence[float] = CUT_SHARES,
) -> pd.DataFrame:
    """`rows` diamonds with a price; the same arguments always give the same frame."""
    rng = np.random.default_rng(seed)
    carat = np.round(np.clip(rng.lognormal(mean=carat_log_mean, sigma=0.5, size=rows), 0.2, 5.0), 2)
    cut = rng.choice(len(CUTS), size=rows, p=list(cut_shares))
    color = rng.choice(len(COLORS), size=rows, p=[0.05, 0.10, 0.15, 0.21, 0.18, 0.18, 0.13])
    clarity = rng.choice(len(CLARITIES), size=rows, p=[0.02, 0.17, 0.24, 0.23, 0.15, 0.09, 0.07, 0.03])
    depth = np.round(rng.normal(61.8, 1.4, size=rows), 1)
    table = np.round(rng.normal(57.5, 2.2, size=rows), 1)
    # Round-brilliant geometry: diameter grows with the cube root of the weight.
    diameter = 6.45 * np.cbrt(carat)
    x = np.round(diameter * rng.normal(1.0, 0.01, size=rows), 2)
    y = np.round(diameter * rng.normal(1.0, 0.01, size=rows), 2)
    z = np.round((x + y) / 2 * depth / 100, 2)
    log_price = (
        8.35
        + 1.75 * np.log(carat)
        + 0.05 * cut
        + 0.07 * color
        + 0.09 * clarity
        - 0.02 * np.abs(depth - 61.8)
        + rng.normal(0, 0.12, size=rows)
    )
    return pd.DataFrame(
        {
            "carat": carat,
            "cut": np.asarray(CUTS, dtype=object)[cut],
            "color": np.asarray(COLORS, dtype=object)[color],
            "clarity": np.asarray(CLARITIES, dtype=object)[clarity],
            "depth": depth,
            "table": table,
            "x": x,
            "y": y,
            "z": z,
            TARGET: np.round(np.exp(log_price)).astype("int64"),
        }
    )


def scoring_frame(rows: int, seed: int = 11, *, shifted: bool = False) -> pd.DataFrame:
    """Rows to score: the features without the price; `shifted`: from the drifted population."""
    if shifted:
        frame = generate(rows, seed, carat_log_mean=SHIFTED_CARAT_LOG_MEAN, cut_shares=SHIFTED_CUT_SHARES)
    else:
        frame = generate(rows, seed)
    return frame[FEATURES]
