"""A character n-gram teacher as a file, for --teacher_probs_file.

TF-IDF of character 1-3-grams + logistic regression (bert/baseline.py, the
model bert/report.py shows as `baseline_ngram`) on the waimai train split.  The probabilities written for the training examples are
out-of-fold (5 folds: each example scored by a model that did not see it),
as a teacher's soft labels on its own training data should be; the dev
accuracy is the full model's.

  python benchmarks/ngram_teacher.py --output_file=output/ngram/train_probs.tsv
  python bert/run_classifier_distill.py --teacher_probs_file=output/ngram/train_probs.tsv ...
"""

import os
import sys

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

sys.path.insert(0, runs.ROOT)
from bert import evaluation, processors  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.path.join(runs.ROOT, "..", "shared", "data",
                                             "waimai"), "text&label data.")
flags.DEFINE_string("output_file", os.path.join(
    runs.ROOT, "output", "ngram", "train_probs.tsv"), "Out-of-fold train "
                    "probabilities (test_results.tsv format).")
flags.DEFINE_integer("folds", 5, "Folds for the out-of-fold probabilities.")


def main(argv):
  del argv
  from sklearn.model_selection import StratifiedKFold
  from bert import baseline
  if not os.path.exists(os.path.join(FLAGS.data_dir, "train.csv")):
    print(f"skipped: no {FLAGS.data_dir}/train.csv")
    return
  import numpy as np
  processor = processors.get_processor("emotion")
  train = processor.get_train_examples(FLAGS.data_dir)
  dev = processor.get_dev_examples(FLAGS.data_dir)
  labels = processor.get_labels()
  x = [baseline.example_text(e) for e in train]
  y = np.array([labels.index(e.label) for e in train])

  probs = np.zeros([len(train), len(labels)])
  folds = StratifiedKFold(FLAGS.folds, shuffle=True, random_state=0)
  for fit, held in folds.split(x, y):
    model = baseline.ngram_model().fit([x[i] for i in fit], y[fit])
    probs[held] = model.predict_proba([x[i] for i in held])
  model = baseline.ngram_model().fit(x, y)
  dev_y = np.array([labels.index(e.label) for e in dev])
  dev_accuracy = float((model.predict(
      [baseline.example_text(e) for e in dev]) == dev_y).mean())
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_file)),
              exist_ok=True)
  evaluation.write_test_results(FLAGS.output_file, probs.astype(np.float32))
  print(f"n-gram teacher: dev accuracy {dev_accuracy:.4f}, out-of-fold train "
        f"accuracy {float((probs.argmax(-1) == y).mean()):.4f}; wrote "
        f"{FLAGS.output_file}")


if __name__ == "__main__":
  app.run(main)
