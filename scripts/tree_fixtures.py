#!/usr/bin/env python3
"""Parity fixtures for limen's tree ensembles, made by the real libraries (never typed by hand).

    python scripts/tree_fixtures.py OUT_DIR

For each case writes to OUT_DIR/<case>/: the model as its library saves it (`model.json` and
`model.ubj` for XGBoost, `model.txt` for LightGBM), `data.csv` (labelled rows, no missing cell, for
`limen import --data`), and `expected.json`: the library, the feature and class names, held-out
rows (with missing values as null), the library's probabilities, its margins (raw scores) and its
SHAP values (XGBoost `pred_contribs=True`, LightGBM `pred_contrib=True`; per output, the last
column the bias). CI runs it in the pinned venv of tests/trees/requirements.txt;
`tests/trees.rs` compares limen with it.

Also OUT_DIR/sklearn_forest_cv.json: scikit-learn's `RandomForestClassifier(n_estimators=100)`
accuracy under `cross_val_score` with `StratifiedKFold(5)` (no shuffle: the folds limen's
`--cv-folds 5` makes) on each table in data/, every column but the label a feature, averaged over
random_state 0-4; `tests/forest.rs` holds `limen train --kind random-forest` within 0.02 of it.

And OUT_DIR/class_weight/<case>/: `train.csv` (an imbalanced table: binary churn-like, 8 % positive,
or three classes 70/22/8 %), `test.csv` (held-out rows, same columns) and `expected.json`:
`make_pipeline(StandardScaler(), LogisticRegression(C=1, class_weight="balanced"))` fully
converged (tol 1e-10), its classes and probabilities on the held-out rows;
`tests/class_weight.rs` holds `limen train --standardize --class-weight balanced` to 1e-3.
"""
import csv
import json
import os
import pathlib
import sys

import lightgbm as lgb
import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score

# The shipped tables and their label columns.
TABLES = {"iris": "species", "wine": "cultivar", "breast_cancer": "diagnosis"}


def forest_cv(out):
    root = pathlib.Path(__file__).resolve().parent.parent
    result = {}
    for table, label in TABLES.items():
        with open(root / "data" / f"{table}.csv") as f:
            rows = list(csv.DictReader(f))
        features = [c for c in rows[0] if c != label]
        X = np.array([[float(r[c]) for c in features] for r in rows])
        y = np.array([r[label] for r in rows])
        scores = [
            cross_val_score(RandomForestClassifier(n_estimators=100, random_state=seed), X, y,
                            cv=StratifiedKFold(5)).mean()
            for seed in range(5)
        ]
        result[table] = {"label": label, "features": features, "cv_accuracy": float(np.mean(scores)),
                         "per_seed": [float(s) for s in scores]}
    import sklearn
    result["source"] = (f"scikit-learn {sklearn.__version__} RandomForestClassifier(n_estimators=100), "
                        "StratifiedKFold(5), mean over random_state 0-4")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "sklearn_forest_cv.json"), "w") as f:
        json.dump(result, f, indent=1)


def class_weight(out):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import sklearn

    rng = np.random.default_rng(11)
    names = ["tenure", "monthly_charges", "support_calls", "discount"]
    cases = {}
    # Binary: churn against stay, 9 % positive, overlapping.
    n = 2400
    X = np.column_stack([rng.gamma(2.0, 12.0, n), rng.normal(70, 20, n), rng.poisson(1.5, n),
                         rng.uniform(0, 0.3, n)])
    z = -2.3 - 0.04 * (X[:, 0] - 24) + 0.02 * (X[:, 1] - 70) + 0.5 * (X[:, 2] - 1.5) - 3 * X[:, 3]
    y = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-z)), "churn", "stay")
    cases["binary"] = (X, y, "outcome")
    # Three classes, 70/22/8 %.
    X3 = rng.normal(size=(n, 4)) * [1.0, 2.0, 0.5, 3.0] + [0, 5, 1, -2]
    u = rng.uniform(size=n)
    y3 = np.where(u < 0.70, "basic", np.where(u < 0.92, "plus", "premium"))
    X3[y3 == "plus", 0] += 1.0
    X3[y3 == "premium", 1] += 2.5
    X3[y3 == "premium", 2] -= 0.4
    cases["multiclass"] = (X3, y3, "plan")
    for case, (X, y, label) in cases.items():
        folder = os.path.join(out, "class_weight", case)
        os.makedirs(folder, exist_ok=True)
        train, test = slice(0, 2000), slice(2000, None)
        model = make_pipeline(StandardScaler(), LogisticRegression(
            C=1.0, class_weight="balanced", tol=1e-10, max_iter=100_000)).fit(X[train], y[train])
        for part, rows in [("train", train), ("test", test)]:
            with open(os.path.join(folder, f"{part}.csv"), "w") as f:
                f.write(",".join(names + [label]) + "\n")
                for row, value in zip(X[rows], y[rows]):
                    f.write(",".join(repr(float(v)) for v in row) + f",{value}\n")
        counts = {str(c): int((y[train] == c).sum()) for c in np.unique(y[train])}
        with open(os.path.join(folder, "expected.json"), "w") as f:
            json.dump({
                "source": f"scikit-learn {sklearn.__version__} make_pipeline(StandardScaler(), "
                          "LogisticRegression(C=1, class_weight='balanced', tol=1e-10))",
                "label": label, "features": names, "counts": counts,
                "classes": [str(c) for c in model.classes_],
                "predict_proba": model.predict_proba(X[test]).tolist(),
                "unweighted_predict_proba": make_pipeline(StandardScaler(), LogisticRegression(
                    C=1.0, tol=1e-10, max_iter=100_000)).fit(X[train], y[train])
                .predict_proba(X[test]).tolist(),
            }, f, indent=1)


def mixed(out):
    """Tables of numbers and text with 5-20 % missing cells, and categories in the held-out rows
    that training never saw: scikit-learn's ColumnTransformer pipeline (median imputer and scaler
    on the numbers, OneHotEncoder(handle_unknown="ignore") on the text) fitted on them."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    import sklearn

    rng = np.random.default_rng(26)
    num = ["age", "income", "score", "tenure"]
    cat = ["plan", "region", "device"]
    n_train, n_test = 3000, 600
    n = n_train + n_test
    for case, classes in [("binary", ["no", "yes"]), ("multiclass", ["basic", "plus", "premium"])]:
        X_num = rng.normal(size=(n, 4)) * [12.0, 20_000.0, 1.0, 30.0] + [40.0, 60_000.0, 0.0, 24.0]
        codes = rng.integers(0, 20, size=(n, 3))
        effects = rng.normal(size=(3, 20, len(classes)))
        weights = rng.normal(size=(4, len(classes))) / np.array([12.0, 20_000.0, 1.0, 30.0])[:, None]
        z = (X_num - X_num.mean(axis=0)) @ weights
        for j in range(3):
            z += effects[j][codes[:, j]]
        z += rng.gumbel(size=z.shape)
        y = np.array(classes)[z.argmax(axis=1)]
        text = np.array([[f"{c}_{v:02d}" for c, v in zip(cat, row)] for row in codes], dtype=object)
        # Held-out rows: a category training never saw in about 10 % of each text cell.
        unseen = rng.random(size=(n_test, 3)) < 0.1
        text[n_train:][unseen] = np.array([f"{c}_new" for c in cat], dtype=object)[
            np.nonzero(unseen)[1]]
        X = np.empty((n, 7), dtype=object)
        X[:, :4] = X_num
        X[:, 4:] = text
        # Missing cells: 5 to 20 % per column.
        for j, share in enumerate([0.05, 0.1, 0.15, 0.2, 0.05, 0.12, 0.2]):
            X[rng.random(n) < share, j] = np.nan
        model = make_pipeline(
            ColumnTransformer([
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [0, 1, 2, 3]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), [4, 5, 6]),
            ]),
            LogisticRegression(C=1.0, tol=1e-10, max_iter=100_000),
        ).fit(X[:n_train], y[:n_train])
        folder = os.path.join(out, "mixed", case)
        os.makedirs(folder, exist_ok=True)

        def cell(v):
            if isinstance(v, float) and np.isnan(v):
                return ""
            return repr(float(v)) if isinstance(v, float) else str(v)

        for part, rows in [("train", slice(0, n_train)), ("test", slice(n_train, n))]:
            with open(os.path.join(folder, f"{part}.csv"), "w") as f:
                f.write(",".join(num + cat + ["label"]) + "\n")
                for row, value in zip(X[rows], y[rows]):
                    f.write(",".join(cell(v) for v in row) + f",{value}\n")
        imputer = model[0].named_transformers_["num"][0]
        encoder = model[0].named_transformers_["cat"]
        with open(os.path.join(folder, "expected.json"), "w") as f:
            json.dump({
                "source": f"scikit-learn {sklearn.__version__} make_pipeline(ColumnTransformer(["
                          "SimpleImputer(median)+StandardScaler on numbers, "
                          "OneHotEncoder(handle_unknown='ignore') on text]), LogisticRegression(C=1))",
                "label": "label", "numeric": num, "categorical": cat,
                "classes": [str(c) for c in model.classes_],
                "imputed": [float(v) for v in imputer.statistics_],
                "categories": [[None if isinstance(v, float) else str(v) for v in c]
                               for c in encoder.categories_],
                "predict_proba": model.predict_proba(X[n_train:]).tolist(),
            }, f, indent=1)


def dump(folder, library, names, classes, X_train, y_train, X_test, proba, margin, contribs):
    """Writes data.csv and expected.json; proba/margin/contribs are the library's, any shape."""
    n = len(X_test)
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1:  # binary: P(class 1)
        proba = np.stack([1 - proba, proba], axis=1)
    outputs = 1 if len(classes) == 2 else len(classes)
    margin = np.asarray(margin, dtype=float).reshape(n, outputs)
    contribs = np.asarray(contribs, dtype=float).reshape(n, outputs, len(names) + 1)
    with open(os.path.join(folder, "data.csv"), "w") as f:
        f.write(",".join(names + ["label"]) + "\n")
        for row, label in zip(X_train, y_train):
            f.write(",".join(repr(float(v)) for v in row) + f",{classes[int(label)]}\n")
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in X_test]
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(
            {
                "library": library,
                "features": names,
                "classes": classes,
                "rows": rows,
                "probabilities": proba.tolist(),
                "margins": margin.tolist(),
                "contributions": contribs.tolist(),
            },
            f,
        )


def complete(X, y, data):
    """The labelled rows for `limen import --data`: `data` if given, else X's complete rows."""
    if data is not None:
        return data
    keep = ~np.isnan(X).any(axis=1)
    return X[keep], y[keep]


def xgb_case(out, name, params, rounds, X_train, y_train, names, classes, X_test, types=None,
             data=None):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    categorical = types is not None
    train = xgb.DMatrix(X_train, label=y_train, feature_names=names, feature_types=types,
                        enable_categorical=categorical)
    booster = xgb.train({**params, "nthread": 1, "seed": 1}, train, rounds)
    booster.save_model(os.path.join(folder, "model.json"))
    booster.save_model(os.path.join(folder, "model.ubj"))
    d = xgb.DMatrix(X_test, feature_names=names, feature_types=types, enable_categorical=categorical)
    clean, labels = complete(X_train, y_train, data)
    dump(folder, "xgboost", names, classes, clean, labels, X_test, booster.predict(d),
         booster.predict(d, output_margin=True), booster.predict(d, pred_contribs=True))


def lgb_case(out, name, params, rounds, X_train, y_train, names, classes, X_test, categorical=(),
             data=None):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    train = lgb.Dataset(X_train, label=y_train, feature_name=names,
                        categorical_feature=list(categorical) or "auto", free_raw_data=False)
    booster = lgb.train({**params, "num_threads": 1, "seed": 1, "verbose": -1,
                         "deterministic": True}, train, rounds)
    booster.save_model(os.path.join(folder, "model.txt"))
    clean, labels = complete(X_train, y_train, data)
    dump(folder, "lightgbm", names, classes, clean, labels, X_test, booster.predict(X_test),
         booster.predict(X_test, raw_score=True), booster.predict(X_test, pred_contrib=True))


def categorical_table(rng, n, classes):
    """Two categorical columns (codes 0-19 and 0-2), two numeric; the label depends on all."""
    wide = rng.integers(0, 20, n).astype(float)
    narrow = rng.integers(0, 3, n).astype(float)
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    score = np.isin(wide, [1, 4, 5, 9, 13, 17]) * 1.5 + (narrow == 2) * 1.0 + a - 0.5 * b
    cuts = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    y = np.searchsorted(cuts, score + rng.normal(scale=0.3, size=n)).astype(float)
    return np.stack([wide, narrow, a, b], axis=1), y


def with_missing(rng, X, share):
    X = X.copy()
    X[rng.random(X.shape) < share] = np.nan
    return X


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(7)

    # Breast cancer: binary, numeric, missing cells in training (so default directions are
    # learned) and in the held-out rows.
    X, y = load_breast_cancer(return_X_y=True)
    cancer = [f"f{i}" for i in range(X.shape[1])]
    order = rng.permutation(len(y))
    train, test = order[:450], order[450:]
    X_missing = with_missing(rng, X, 0.05)
    xgb_case(out, "xgb_binary", {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1}, 100,
             X_missing[train], y[train], cancer, ["malignant", "benign"], X_missing[test],
             data=(X[train], y[train]))
    # LightGBM: missing_type NaN where training saw NaN.
    lgb_case(out, "lgb_binary", {"objective": "binary", "num_leaves": 31, "learning_rate": 0.1,
                                 "min_data_in_leaf": 5}, 100,
             X_missing[train], y[train], cancer, ["malignant", "benign"], X_missing[test],
             data=(X[train], y[train]))
    # 1,000 trees of depth 8 (the size of a real production model) on a noisy table whose trees
    # keep splitting, with missing cells; 20 held-out rows.
    X_deep = rng.normal(size=(1520, 12))
    y_deep = (X_deep[:, 0] + X_deep[:, 1] * X_deep[:, 2] + rng.normal(size=1520) > 0).astype(int)
    X_deep_missing = with_missing(rng, X_deep, 0.03)
    deep = [f"d{i}" for i in range(12)]
    xgb_case(out, "xgb_deep", {"objective": "binary:logistic", "max_depth": 8, "eta": 0.05,
                               "lambda": 0.1}, 1000,
             X_deep_missing[:1500], y_deep[:1500], deep, ["no", "yes"], X_deep_missing[1500:],
             data=(X_deep[:1500], y_deep[:1500]))
    lgb_case(out, "lgb_deep", {"objective": "binary", "num_leaves": 255, "max_depth": 8,
                               "learning_rate": 0.05, "min_data_in_leaf": 3}, 1000,
             X_deep_missing[:1500], y_deep[:1500], deep, ["no", "yes"], X_deep_missing[1500:],
             data=(X_deep[:1500], y_deep[:1500]))
    # LightGBM with zero_as_missing: missing_type Zero (a zero or a NaN takes the default side).
    X_zero = X.copy()
    X_zero[rng.random(X.shape) < 0.08] = 0.0
    X_zero_test = with_missing(rng, X_zero[test], 0.05)
    lgb_case(out, "lgb_zero_missing", {"objective": "binary", "num_leaves": 15,
                                       "zero_as_missing": True, "min_data_in_leaf": 5}, 40,
             X_zero[train], y[train], cancer, ["malignant", "benign"], X_zero_test)

    # Wine: multiclass, no missing cell in training (LightGBM's missing_type None: a missing
    # value is read as 0), missing cells in the held-out rows.
    X, y = load_wine(return_X_y=True)
    wine = [f"w{i}" for i in range(X.shape[1])]
    order = rng.permutation(len(y))
    train, test = order[:130], order[130:]
    X_test = with_missing(rng, X[test], 0.1)
    xgb_case(out, "xgb_multiclass", {"objective": "multi:softprob", "num_class": 3, "max_depth": 4,
                                     "eta": 0.3}, 30,
             X[train], y[train], wine, ["a", "b", "c"], X_test)
    lgb_case(out, "lgb_multiclass", {"objective": "multiclass", "num_class": 3, "num_leaves": 8,
                                     "min_data_in_leaf": 5}, 30,
             X[train], y[train], wine, ["a", "b", "c"], X_test)

    # Categorical features given as integer codes: partition splits (many categories) and
    # one-hot splits (few), with missing codes.
    cat_names = ["wide", "narrow", "a", "b"]
    X, y = categorical_table(rng, 3000, 2)
    X_train, y_train = with_missing(rng, X[:2400], 0.03), y[:2400]
    X_test = with_missing(rng, X[2400:2700], 0.05)
    xgb_case(out, "xgb_categorical", {"objective": "binary:logistic", "max_depth": 5,
                                      "tree_method": "hist", "max_cat_to_onehot": 4}, 50,
             X_train, y_train, cat_names, ["no", "yes"], X_test, types=["c", "c", "q", "q"])
    X, y = categorical_table(rng, 3000, 3)
    X_train, y_train = with_missing(rng, X[:2400], 0.03), y[:2400]
    X_test = with_missing(rng, X[2400:2700], 0.05)
    lgb_case(out, "lgb_categorical", {"objective": "multiclass", "num_class": 3, "num_leaves": 15,
                                      "min_data_per_group": 10, "cat_smooth": 1}, 40,
             X_train, y_train, cat_names, ["low", "mid", "high"], X_test, categorical=[0, 1])
    forest_cv(out)
    class_weight(out)
    mixed(out)
    print(f"tree fixtures written to {out} (xgboost {xgb.__version__}, lightgbm {lgb.__version__})")


if __name__ == "__main__":
    main()
