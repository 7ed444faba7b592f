#!/usr/bin/env python3
"""Regenerates tests/golden/sklearn_iris_multinomial.json: scikit-learn's reference answers for
the three-species model (all four features, multinomial LogisticRegression() with its defaults,
C=1), one row of class probabilities per line of data/iris.csv.

    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn
    /tmp/skl/bin/python scripts/sklearn_golden.py

The Rust test `multiclass_model_matches_scikit_learn_on_every_training_row` compares limen's
probabilities with these to 1e-2, as issue 4 asks.
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
