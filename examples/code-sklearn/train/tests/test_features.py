"""Unit tests of the feature engineering: `mlops pipeline` users run them with
`python -m pytest examples/code-sklearn/train/tests` in the pipeline's environment."""

import math
import os
import sys

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from features import build_features, numeric_and_categorical  # noqa: E402

FEATURES = [
    {"name": "tenure", "type": "numeric"},
    {"name": "charges", "type": "numeric"},
    {"name": "contract", "type": "categorical", "categories": ["a", "b"]},
]


def test_features_are_split_by_type():
    assert numeric_and_categorical(FEATURES) == (["tenure", "charges"], ["contract"])


def test_missing_numbers_become_finite_and_products_are_added():
    df = pd.DataFrame({"tenure": [1.0, None, 3.0], "charges": [10.0, 20.0, None], "contract": ["a", "b", "a"]})
    out = build_features(["tenure", "charges"], ["contract"]).fit_transform(df)
    # Two scaled numbers, their product, and two one-hot columns.
    assert out.shape == (3, 5)
    assert all(math.isfinite(v) for v in out.ravel())


def test_an_unknown_category_is_all_zeros():
    df = pd.DataFrame({"tenure": [1.0, 2.0], "charges": [1.0, 2.0], "contract": ["a", "b"]})
    t = build_features(["tenure", "charges"], ["contract"], interactions=False).fit(df)
    unseen = pd.DataFrame({"tenure": [1.0], "charges": [1.0], "contract": ["z"]})
    assert list(t.transform(unseen)[0][2:]) == [0.0, 0.0]
