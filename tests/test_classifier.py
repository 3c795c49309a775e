"""bert/classifier.py called directly with a RunConfig (no flags)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from bert import classifier, evaluation, modeling
from bert.errors import UserError
from bert.run_config import RunConfig
from tests import helpers


@pytest.fixture
def config(tmp_path):
  d = str(tmp_path)
  return RunConfig(
      task_name="emotion", data_dir=helpers.write_emotion_data(
          os.path.join(d, "data")),
      bert_config_file=helpers.write_config(d),
      vocab_file=helpers.write_vocab(d), output_dir=os.path.join(d, "out"),
      max_seq_length=16, do_eval=True, do_predict=True, eval_batch_size=5,
      predict_batch_size=3)


def test_train_steps(config):
  assert classifier.train_steps(config.replace(train_batch_size=8,
                                               num_train_epochs=2.0), 96) == (
                                                   24, 2)
  with pytest.raises(UserError, match="--num_train_epochs=0.01 with "
                     "--train_batch_size=32 on 96 examples gives no training "
                     "step"):
    classifier.train_steps(config.replace(num_train_epochs=0.01), 96)


def test_missing_split_is_found_first(config):
  task = classifier.load_task(config)
  os.remove(os.path.join(config.data_dir, "test.csv"))
  classifier.check_data_files(config.replace(do_predict=False),
                              task.processor, train=True)
  with pytest.raises(UserError, match=r"data/test.csv: file not found \(the "
                     r"test split, needed by --do_predict\)"):
    classifier.check_data_files(config, task.processor, train=True)


def test_evaluate_and_predict_write_google_outputs(config):
  task = classifier.load_task(config)
  assert task.label_list == ["0", "1"]
  assert isinstance(task.bert_config, modeling.BertConfig)
  tf.random.set_seed(1)
  model = modeling.BertClassifier(task.bert_config, 2)
  forward = classifier.make_forward(model)
  os.makedirs(config.output_dir)
  metrics = classifier.evaluate(config, forward, task, global_step=7)
  with open(os.path.join(config.output_dir, "eval_results.txt")) as f:
    lines = dict(line.strip().split(" = ") for line in f)
  assert float(lines["eval_accuracy"]) == metrics["eval_accuracy"]
  assert lines["global_step"] == "7"
  # The same numbers straight from the model on the dev split.
  dataset, n = classifier.split_dataset(config, task, "dev", 32, False)
  out = evaluation.predict_logits(forward, dataset)
  assert n == 32 and out["logits"].shape == (32, 2)
  accuracy = float((out["logits"].argmax(-1) == out["label_ids"]).mean())
  assert metrics["eval_accuracy"] == pytest.approx(accuracy)

  probs = classifier.predict(config, forward, task)
  rows = np.loadtxt(os.path.join(config.output_dir, "test_results.tsv"),
                    delimiter="\t")
  assert rows.shape == (16, 2)
  np.testing.assert_allclose(rows, probs, atol=1e-7)
  np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-6)
