#!/usr/bin/env python3
"""Parity fixtures for limen's tree ensembles, made by the real libraries (never typed by hand).

    python scripts/tree_fixtures.py OUT_DIR

For each case writes to OUT_DIR/<case>/: `model.json` (XGBoost's own `save_model`), `data.csv`
(labelled rows, no missing cell, for `limen import --data`), and `expected.json`: held-out rows
(some with missing values, as null), the library's `predict_proba`-equivalent probabilities, its
margins and its SHAP values (`pred_contribs=True`, the last column the bias). CI runs it in the
pinned venv of tests/trees/requirements.txt; `tests/trees.rs` compares limen with it.
"""
import json
import os
import sys

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_wine


def write_case(out, name, booster, X_train, y_train, feature_names, classes, X_test):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    booster.save_model(os.path.join(folder, "model.json"))
    with open(os.path.join(folder, "data.csv"), "w") as f:
        f.write(",".join(feature_names + ["label"]) + "\n")
        for row, label in zip(X_train, y_train):
            f.write(",".join(repr(float(v)) for v in row) + f",{classes[int(label)]}\n")
    d = xgb.DMatrix(X_test, feature_names=feature_names)
    proba = booster.predict(d)
    margin = booster.predict(d, output_margin=True)
    contribs = booster.predict(d, pred_contribs=True)
    if proba.ndim == 1:  # binary: P(class 1)
        proba = np.stack([1 - proba, proba], axis=1)
        margin = margin[:, None]
        contribs = contribs[:, None, :]
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in X_test]
    json.dump(
        {
            "features": feature_names,
            "classes": classes,
            "rows": rows,
            "probabilities": proba.astype(float).tolist(),
            "margins": margin.astype(float).tolist(),
            "contributions": contribs.astype(float).tolist(),
        },
        open(os.path.join(folder, "expected.json"), "w"),
    )


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(7)

    # Binary: breast cancer, 100 trees of depth 6, trained with missing cells (so the default
    # directions are learned), scored on held-out rows with missing cells too.
    X, y = load_breast_cancer(return_X_y=True)
    names = [f"f{i}" for i in range(X.shape[1])]
    order = rng.permutation(len(y))
    train, test = order[:450], order[450:]
    X_missing = X.copy()
    X_missing[rng.random(X.shape) < 0.05] = np.nan
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 1, "seed": 1},
        xgb.DMatrix(X_missing[train], label=y[train], feature_names=names),
        100,
    )
    write_case(out, "xgb_binary", booster, X[train], y[train], names, ["malignant", "benign"], X_missing[test])

    # Multiclass: wine, softprob, 30 rounds × 3 classes of depth 4.
    X, y = load_wine(return_X_y=True)
    names = [f"w{i}" for i in range(X.shape[1])]
    order = rng.permutation(len(y))
    train, test = order[:130], order[130:]
    X_test = X[test].copy()
    X_test[rng.random(X_test.shape) < 0.1] = np.nan
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 4, "eta": 0.3, "nthread": 1, "seed": 1},
        xgb.DMatrix(X[train], label=y[train], feature_names=names),
        30,
    )
    write_case(out, "xgb_multiclass", booster, X[train], y[train], names, ["a", "b", "c"], X_test)
    print(f"tree fixtures written to {out} (xgboost {xgb.__version__})")


if __name__ == "__main__":
    main()
