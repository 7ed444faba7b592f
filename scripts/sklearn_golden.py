#!/usr/bin/env python3
"""Regenerates scikit-learn's reference answers that limen's tests compare with:

- tests/golden/sklearn_iris_multinomial.json: the three-species model (all four features,
  multinomial LogisticRegression() with its defaults, C=1), one row of class probabilities per
  line of data/iris.csv (`multiclass_model_matches_scikit_learn_on_every_training_row`, 1e-2);
- data/breast_cancer.csv and data/wine.csv: two public tables scikit-learn ships offline
  (569 rows × 30 features, binary; 178 rows × 13 features, 3 classes), written from
  `sklearn.datasets` with spaces in feature names replaced by underscores;
- tests/golden/sklearn_breast_cancer.json and sklearn_wine.json: what
  `make_pipeline(StandardScaler(), LogisticRegression(C=1))` answers for every row, fully
  converged (tol 1e-10, max_iter 100,000), which `limen train --standardize` must match
  (`standardized_fits_match_scikit_learn_on_public_tables`: 1e-3 binary, 1e-2 multinomial).

    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn
    /tmp/skl/bin/python scripts/sklearn_golden.py
"""
import csv
import json
import pathlib

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

root = pathlib.Path(__file__).resolve().parent.parent
features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
with open(root / "data" / "iris.csv") as f:
    rows = list(csv.DictReader(f))
X = np.array([[float(r[c]) for c in features] for r in rows])
y = np.array([r["species"] for r in rows])

model = LogisticRegression().fit(X, y)  # lbfgs, L2, C=1, multinomial for 3 classes
proba = model.predict_proba(X)
golden = {
    "source": f"scikit-learn {sklearn.__version__}, LogisticRegression() defaults "
    "(lbfgs, L2, C=1.0, multinomial), fit on all 150 rows of data/iris.csv",
    "features": features,
    "classes": [str(c) for c in model.classes_],
    "coef": model.coef_.tolist(),
    "intercept": model.intercept_.tolist(),
    "train_accuracy": float(model.score(X, y)),
    "predict_proba": proba.tolist(),
}
out = root / "tests" / "golden" / "sklearn_iris_multinomial.json"
out.write_text(json.dumps(golden, indent=1) + "\n")
print(f"wrote {out}: train accuracy {golden['train_accuracy']}")


# Standardized fits on two public tables (issue 13).
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

for table, loader, label, positive in [
    ("breast_cancer", load_breast_cancer, "diagnosis", "benign"),
    ("wine", load_wine, "cultivar", None),
]:
    d = loader()
    names = [f.replace(" ", "_").replace("/", "_") for f in d.feature_names]
    labels = [str(d.target_names[t]) for t in d.target]
    with open(root / "data" / f"{table}.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names + [label])
        for x, y in zip(d.data, labels):
            w.writerow([repr(float(v)) for v in x] + [y])
    X, y = d.data, np.array(labels)
    if positive is not None:
        y = (y == positive).astype(int)  # P(positive) is predict_proba[:, 1]
    pipe = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, tol=1e-10, max_iter=100_000)
    ).fit(X, y)
    proba = pipe.predict_proba(X)
    lr = pipe[-1]
    golden = {
        "source": f"scikit-learn {sklearn.__version__}, make_pipeline(StandardScaler(), "
        "LogisticRegression(C=1.0, tol=1e-10, max_iter=100000)), fit on every row of "
        f"data/{table}.csv",
        "features": names,
        "label_column": label,
        "positive": positive,
        # limen's order: a binary model's classes are [the other class, positive], as written.
        "classes": [str(c) for c in lr.classes_] if positive is None
        else [str(c) for c in lr.classes_ if str(c) != positive] + [positive],
        "iterations": int(lr.n_iter_[0]),
        "train_accuracy": float(pipe.score(X, y)),
        "predict_proba": proba.tolist(),
    }
    out = root / "tests" / "golden" / f"sklearn_{table}.json"
    out.write_text(json.dumps(golden) + "\n")
    print(f"wrote {out}: train accuracy {golden['train_accuracy']}, {golden['iterations']} iterations")

# The same tables unscaled, as a new user would first try them: scikit-learn's own default
# (100 iterations) warns that it did not converge.
import warnings
for table, loader in [("breast_cancer", load_breast_cancer), ("wine", load_wine)]:
    d = loader()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LogisticRegression().fit(d.data, d.target)
    print(f"{table} unscaled, LogisticRegression(): {len(caught)} warning(s):",
          "; ".join(str(w.message).splitlines()[0] for w in caught))
