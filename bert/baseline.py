"""A character n-gram baseline: TF-IDF of character 1-3-grams + logistic
regression (scikit-learn), for bert/report.py and benchmarks/ngram_teacher.py.

  TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                  min_df=2)
  LogisticRegression(C=10, max_iter=2000)

Character n-grams need no tokeniser, so the same model fits Chinese reviews
and English tweets alike; it is what a BERT classifier has to beat to be
worth its cost.  A pair task's two texts are joined by a tab, which no text
contains (the TSV readers split on it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from bert.errors import UserError

NGRAM_RANGE = (1, 3)
# Strong regularisation underfits short texts; C=10 was the benchmark's
# choice on the reviews (benchmarks/ngram_teacher.py).
C = 10.0
# lbfgs on tens of thousands of sparse n-gram features needs more than the
# default 100 iterations to converge.
MAX_ITER = 2000
# n-grams seen in one text only are mostly noise (typos, names).
MIN_DF = 2


def ngram_model() -> Pipeline:
  """An unfitted TF-IDF character n-gram + logistic-regression pipeline."""
  return Pipeline([
      ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=NGRAM_RANGE,
                                sublinear_tf=True, min_df=MIN_DF)),
      ("logreg", LogisticRegression(C=C, max_iter=MAX_ITER)),
  ])


def example_text(example) -> str:
  """The raw text of an `InputExample` (text_b after a tab for pairs)."""
  if example.text_b is None:
    return example.text_a
  return example.text_a + "\t" + example.text_b


def fit_ngram(texts: Sequence[str], labels: Sequence[str]) -> Pipeline:
  """`ngram_model()` fitted on `texts` and their string `labels`."""
  if len(set(labels)) < 2:
    raise UserError(f"the n-gram baseline needs at least two labels in the "
                    f"train split, found {sorted(set(labels))}")
  model = ngram_model()
  model.fit(list(texts), np.asarray(labels))
  return model


def parameter_count(model: Pipeline) -> int:
  """Weights of the fitted logistic regression (coefficients + intercepts)."""
  logreg = model.named_steps["logreg"]
  return int(logreg.coef_.size + logreg.intercept_.size)
