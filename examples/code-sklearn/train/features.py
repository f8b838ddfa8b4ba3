"""The team's feature engineering: what the model sees of a customer, as a scikit-learn transformer
that skl2onnx exports, so serving computes it exactly as training did."""

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler


def numeric_and_categorical(features):
    """The names of the numeric and the categorical features, from MLOPS_FEATURES' entries."""
    numeric = [f["name"] for f in features if f["type"] == "numeric"]
    categorical = [f["name"] for f in features if f["type"] == "categorical"]
    return numeric, categorical


def build_features(numeric, categorical, interactions=True):
    """Missing numbers as the median, scaled; pairwise products of the numbers (tenure × charges
    says more about churn than either); categories one-hot, unknown ones as all zeros."""
    steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    if interactions:
        steps.append(("pairs", PolynomialFeatures(degree=2, interaction_only=True, include_bias=False)))
    return ColumnTransformer(
        [
            ("num", Pipeline(steps), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
