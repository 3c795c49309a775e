"""TinyBERT-style intermediate-layer distillation: layer maps, the losses
against numpy references, the staged loss and learning rate, and
run_classifier_distill.py end to end with --stage (tiny models)."""

import glob
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import export_reader
from bert import bilstm, export, modeling
from bert import run_classifier_distill as distill
from bert import tinybert
from bert.errors import UserError
from tests import helpers

SEQ = 16


# ---------------------------------------------------------------- layer_map


@pytest.mark.parametrize("m, n, expected", [
    (2, 4, [1, 3]), (4, 12, [2, 5, 8, 11]), (3, 4, [0, 1, 3]),
    (6, 12, [1, 3, 5, 7, 9, 11]), (2, 2, [0, 1]), (1, 3, [2])])
def test_uniform_map_ends_on_the_last_teacher_layer(m, n, expected):
  assert tinybert.layer_map(m, n, "uniform") == expected


def test_last_and_explicit_maps():
  assert tinybert.layer_map(2, 4, "last") == [2, 3]
  assert tinybert.layer_map(4, 12, "last") == [8, 9, 10, 11]
  assert tinybert.layer_map(3, 4, "0, 0,3") == [0, 0, 3]


@pytest.mark.parametrize("m, n, spec, message", [
    (2, 4, "1,2,3", "lists 3 teacher layers but the student has 2"),
    (2, 4, "0,4", "layer 4 is out of range"),
    (2, 4, "-1,2", "layer -1 is out of range"),
    (2, 4, "a,b", "must be uniform, last or comma-separated"),
    (4, 2, "uniform", "more than the teacher's 2"),
    (4, 2, "last", "more than the teacher's 2")])
def test_bad_layer_maps_name_the_flag(m, n, spec, message):
  with pytest.raises(UserError, match="--layer_map") as e:
    tinybert.layer_map(m, n, spec)
  assert message in str(e.value)


# ------------------------------------------------------------------- losses


def np_masked_mse(s, t, mask):
  per_position = ((s - t) ** 2).mean(-1)
  return (per_position * mask).sum() / mask.sum()


def np_attention_mse(s, t, mask):
  """Average over heads and the real (query, key) pairs only."""
  b, n, q, _ = s.shape
  total, count = 0.0, 0
  for i in range(b):
    for j in range(q):
      for k in range(q):
        if mask[i, j] and mask[i, k]:
          total += ((s[i, :, j, k] - t[i, :, j, k]) ** 2).sum()
          count += n
  return total / count


def random_case(seed=0, b=3, s=7, hs=8, ht=12, n=2, layers_s=2, layers_t=4):
  rng = np.random.default_rng(seed)
  mask = np.ones([b, s], np.int32)
  mask[0, 4:] = 0
  mask[2, 2:] = 0

  def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)

  adder = ((1 - mask[:, None, None, :]) * -10000.0).astype(np.float32)
  student = modeling.BertOutputs(
      embedding_output=r(b, s, hs),
      encoder_outputs=[r(b, s, hs) for _ in range(layers_s)],
      attention_scores=[r(b, n, s, s) + adder for _ in range(layers_s)],
      attention_probs=None, sequence_output=None, pooled_output=None)
  teacher = {"embedding_output": r(b, s, ht),
             "hidden_states": r(b, layers_t, s, ht),
             "attention_scores": r(b, layers_t, n, s, s) + adder[:, None],
             "logits": r(b, 2)}
  return student, teacher, mask


def test_losses_match_numpy_with_projections_and_masking():
  student, teacher, mask = random_case()
  projections = tinybert.Projections(8, 12, tinybert.LOSSES)
  we, wh = projections.embedding.numpy(), projections.hidden.numpy()
  assert not np.allclose(we, wh)  # Two separate matrices, as in the paper.
  mapping = [1, 3]
  losses = tinybert.intermediate_loss(
      student, teacher, tf.constant(mask), tinybert.LOSSES, mapping,
      projections)

  expected_embedding = np_masked_mse(student.embedding_output @ we,
                                     teacher["embedding_output"], mask)
  expected_hidden = sum(
      np_masked_mse(student.encoder_outputs[m] @ wh,
                    teacher["hidden_states"][:, t], mask)
      for m, t in enumerate(mapping))
  expected_attention = sum(
      np_attention_mse(student.attention_scores[m],
                       teacher["attention_scores"][:, t], mask)
      for m, t in enumerate(mapping))
  assert set(losses) == {"embedding", "hidden", "attention"}
  np.testing.assert_allclose(losses["embedding"], expected_embedding,
                             rtol=1e-5)
  np.testing.assert_allclose(losses["hidden"], expected_hidden, rtol=1e-5)
  np.testing.assert_allclose(losses["attention"], expected_attention,
                             rtol=1e-5)


def test_padded_positions_do_not_count():
  """Changing values at padded positions (and the -10000 at padded keys)
  leaves every loss unchanged; changing a real one does not."""
  student, teacher, mask = random_case(seed=1, hs=12)
  projections = tinybert.Projections(12, 12, tinybert.LOSSES)

  def losses(t):
    return {k: float(v) for k, v in tinybert.intermediate_loss(
        student, t, tf.constant(mask), tinybert.LOSSES, [0, 2],
        projections).items()}

  base = losses(teacher)
  noisy = {k: v.copy() for k, v in teacher.items()}
  pad = mask == 0
  noisy["embedding_output"][pad] += 5.0
  noisy["hidden_states"].transpose(0, 2, 1, 3)[pad] += 5.0
  scores = noisy["attention_scores"]            # [B, L, N, S, S]
  scores.transpose(0, 3, 1, 2, 4)[pad] += 5.0   # padded queries
  scores.transpose(0, 4, 1, 2, 3)[pad] = 0.0    # padded keys: -10000 -> 0
  after = losses(noisy)
  for name in base:
    assert after[name] == pytest.approx(base[name], rel=1e-6), name

  real = {k: v.copy() for k, v in teacher.items()}
  real["embedding_output"][1, 0] += 1.0
  real["hidden_states"][1, 2, 0] += 1.0
  real["attention_scores"][1, 0, 0, 0, 0] += 1.0
  changed = losses(real)
  for name in base:
    assert abs(changed[name] - base[name]) > 1e-4, name


def test_projections_only_when_widths_differ():
  same = tinybert.Projections(32, 32, tinybert.LOSSES)
  assert same.variables_by_name() == {}
  x = tf.random.normal([2, 3, 32])
  np.testing.assert_array_equal(same.project_hidden(x), x)

  hidden_only = tinybert.Projections(32, 48, ["hidden", "attention"])
  assert list(hidden_only.variables_by_name()) == [
      "distill/hidden_projection/kernel"]
  both = tinybert.Projections(32, 48, tinybert.LOSSES)
  assert sorted(both.variables_by_name()) == [
      "distill/embedding_projection/kernel",
      "distill/hidden_projection/kernel"]
  assert both.hidden.shape == (32, 48)
  assert both.project_embedding(x).shape == (2, 3, 48)


# ------------------------------------------------------------ flags, plans


TEACHER = tinybert.TeacherShape(num_layers=4, num_heads=4, hidden_size=48)


def student_config(**overrides):
  return modeling.BertConfig.from_dict({**helpers.TINY_CONFIG, **overrides})


@pytest.mark.parametrize("stage, losses, fraction, message", [
    ("prediction", ["hidden"], 0.5, "--intermediate_losses=hidden needs "
     "--stage=intermediate or --stage=both"),
    ("both", [], 0.5, "--stage=both needs --intermediate_losses"),
    ("intermediate", ["hiden"], 0.5, "--intermediate_losses: 'hiden' is not"),
    ("both", ["hidden"], 1.0, "--intermediate_fraction must be in (0, 1)"),
    ("two", [], 0.5, "--stage must be one of")])
def test_bad_stage_flags(stage, losses, fraction, message):
  with pytest.raises(UserError) as e:
    tinybert.validate_flags(stage, losses, fraction)
  assert message in str(e.value)


def test_plan_checks_heads_and_maps_layers():
  with pytest.raises(UserError) as e:
    tinybert.make_plan("intermediate", ["attention"], "uniform", 0.5,
                       student_config(num_attention_heads=2), TEACHER, 1, 10)
  assert str(e.value) == ("student has 2 heads, teacher 4; "
                          "--intermediate_losses=attention needs equal heads")
  # Without the attention loss, the head counts may differ.
  plan = tinybert.make_plan("both", ["hidden", "embedding"], "uniform", 0.7,
                            student_config(num_attention_heads=2), TEACHER, 1,
                            10)
  assert plan == tinybert.Plan("both", ("embedding", "hidden"), (1, 3), 7)
  assert tinybert.make_plan("prediction", [], "0,5", 0.5, None, None, 3,
                            10) == tinybert.Plan()
  with pytest.raises(UserError, match="one --teacher_model, got 2"):
    tinybert.make_plan("intermediate", ["hidden"], "uniform", 0.5,
                       student_config(), TEACHER, 2, 10)
  with pytest.raises(UserError, match="leaves no prediction step"):
    tinybert.make_plan("both", ["hidden"], "uniform", 0.99, student_config(),
                       TEACHER, 1, 10)


def test_staged_learning_rate_restarts_at_the_switch():
  lr = tinybert.StagedLearningRate(1.0, num_train_steps=30, split=20,
                                   warmup_proportion=0.1)
  values = [float(lr(tf.constant(s, tf.int64))) for s in range(31)]
  # Stage 1: 2 warm-up steps over 20; stage 2: 1 warm-up step over 10.
  np.testing.assert_allclose(values[:3], [0.0, 0.5, 0.9], atol=1e-6)
  np.testing.assert_allclose(values[19], 1.0 - 19 / 20, atol=1e-6)
  np.testing.assert_allclose(values[20:23], [0.0, 0.9, 0.8], atol=1e-6)
  np.testing.assert_allclose(values[29:], [0.1, 0.0], atol=1e-6)


# ------------------------------------------------- the staged loss function


def teacher_model(num_layers=4, hidden=48):
  config = student_config(num_hidden_layers=num_layers, hidden_size=hidden,
                          intermediate_size=64)
  teacher = modeling.BertClassifier(config, 2)

  def intermediate_fn(features):
    logits, out = teacher.forward(features["input_ids"],
                                  features["input_mask"],
                                  features["segment_ids"])
    return {"logits": logits, "embedding_output": out.embedding_output,
            "hidden_states": tf.stack(out.encoder_outputs, 1),
            "attention_scores": tf.stack(out.attention_scores, 1)}

  return teacher, intermediate_fn


def batch(seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 30, [4, 9]).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 5:] = 0
  return {"input_ids": tf.constant(ids * mask), "input_mask": tf.constant(mask),
          "segment_ids": tf.zeros_like(ids), "label_ids": tf.constant(
              [0, 1, 1, 0]), "has_label": tf.ones([4], tf.int32)}


def test_teacher_shape_probe():
  _, intermediate_fn = teacher_model()
  assert tinybert.teacher_shape(intermediate_fn) == TEACHER


def test_both_switches_loss_by_global_step_inside_tf_function():
  _, intermediate_fn = teacher_model()
  student = modeling.BertClassifier(student_config(), 2)
  projections = tinybert.Projections(32, 48, tinybert.LOSSES)
  plan = tinybert.make_plan("both", list(tinybert.LOSSES), "uniform", 0.5,
                            student.config, TEACHER, 1, 10)

  def prediction_loss_fn(features, training, step):
    del step
    logits = student(features["input_ids"], features["input_mask"],
                     features["segment_ids"], training)
    loss = tf.reduce_mean(tf.square(logits))
    return loss, {"soft_loss": loss}

  step = tf.Variable(0, dtype=tf.int64)
  loss_fn = tinybert.make_loss_fn(student, plan, projections,
                                  prediction_loss_fn, intermediate_fn)
  variables = student.trainable_variables + projections.trainable_variables

  @tf.function
  def run(features):
    with tf.GradientTape() as tape:
      loss, metrics = loss_fn(features, False, step.value())
    grads = tape.gradient(loss, variables)
    norms = [tf.constant(-1.0) if g is None
             else tf.norm(tf.convert_to_tensor(g)) for g in grads]
    return loss, metrics, norms

  f = batch()
  _, outputs = student.forward(f["input_ids"], f["input_mask"],
                               f["segment_ids"])
  expected = tinybert.intermediate_loss(
      outputs, intermediate_fn(f), f["input_mask"], plan.losses, plan.mapping,
      projections)
  names = [v.name.split(":")[0] for v in variables]

  loss, metrics, norms = run(f)
  assert sorted(metrics) == ["attention_loss", "embedding_loss", "hidden_loss",
                             "soft_loss"]
  np.testing.assert_allclose(loss, sum(float(v) for v in expected.values()),
                             rtol=1e-5)
  assert float(metrics["soft_loss"]) == 0.0
  np.testing.assert_allclose(metrics["hidden_loss"], expected["hidden"],
                             rtol=1e-5)
  grads = dict(zip(names, (float(n) for n in norms)))
  assert grads["distill/hidden_projection/kernel"] > 0
  assert grads["distill/embedding_projection/kernel"] > 0
  # The head does not take part in the intermediate stage.
  assert grads["output_weights"] <= 0.0

  step.assign(5)  # The split: prediction from here on.
  loss, metrics, norms = run(f)
  logits = student(f["input_ids"], f["input_mask"], f["segment_ids"])
  np.testing.assert_allclose(loss, np.mean(np.square(logits)), rtol=1e-5)
  assert float(metrics["hidden_loss"]) == 0.0
  grads = dict(zip(names, (float(n) for n in norms)))
  assert grads["output_weights"] > 0
  assert grads["distill/hidden_projection/kernel"] <= 0.0


def test_intermediate_stage_trains_towards_the_teacher():
  """A few plain gradient steps on the intermediate loss reduce it."""
  _, intermediate_fn = teacher_model(num_layers=2, hidden=32)
  student = modeling.BertClassifier(student_config(), 2)
  projections = tinybert.Projections(32, 32, tinybert.LOSSES)
  plan = tinybert.make_plan(
      "intermediate", list(tinybert.LOSSES), "uniform", 0.5, student.config,
      tinybert.TeacherShape(2, 4, 32), 1, 10)
  loss_fn = tinybert.make_loss_fn(student, plan, projections, None,
                                  intermediate_fn)
  f = batch(1)
  optimizer_vars = student.trainable_variables

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss, _ = loss_fn(f, False, tf.constant(0, tf.int64))
    grads = tape.gradient(loss, optimizer_vars)
    for v, g in zip(optimizer_vars, grads):
      if g is not None:
        v.assign_sub(0.05 * tf.convert_to_tensor(g))
    return loss

  first = float(step())
  for _ in range(20):
    last = float(step())
  assert last < 0.8 * first


# --------------------------------------- run_classifier_distill.py --stage


def export_teacher(export_dir, vocab_file, seed=7):
  """An untrained 2-layer, 32-wide, 4-head teacher exported from a model."""
  tf.random.set_seed(seed)
  config = modeling.BertConfig.from_dict(helpers.TINY_CONFIG)
  return export.export_classifier(
      modeling.BertClassifier(config, 2), export_dir, vocab_file=vocab_file,
      bert_config=config, label_list=["0", "1"], max_seq_length=SEQ,
      do_lower_case=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """Data, vocab, a teacher, and student configs: 1 layer, 16 wide with 4
  heads (projections needed) or 2 heads (attention impossible)."""
  d = str(tmp_path_factory.mktemp("tinybert"))
  files = {"vocab_file": helpers.write_vocab(d),
           "data_dir": helpers.write_emotion_data(os.path.join(d, "data"))}
  configs = {}
  for name, heads in (("student", 4), ("two_heads", 2)):
    os.makedirs(os.path.join(d, name))
    configs[name] = helpers.write_config(
        os.path.join(d, name), num_hidden_layers=1, hidden_size=16,
        num_attention_heads=heads, intermediate_size=24)
  return {"dir": d, "files": files, **configs,
          "teacher": export_teacher(os.path.join(d, "teacher"),
                                    files["vocab_file"])}


def run(env, output_dir, **flags):
  base = {"task_name": "emotion", "max_seq_length": SEQ,
          "train_batch_size": 8, "learning_rate": 1e-3,
          "num_train_epochs": 1, "log_steps": 1,
          "bert_config_file": env["student"], "teacher_model": env["teacher"],
          "output_dir": str(output_dir), "teacher_eval_sample": 8}
  return helpers.run_main(distill.main, **{**base, **env["files"], **flags})


def step_logs(text):
  """{step: {metric: value}} from the trainer's per-step log lines."""
  steps = {}
  for line in text.splitlines():
    if " loss " in line and "examples/s" in line and "step " in line:
      words = line[line.index("step "):].split()
      step = int(words[1].split("/")[0])
      values = {words[i]: words[i + 1] for i in range(2, len(words) - 1)}
      steps[step] = {k: float(v) for k, v in values.items()
                     if k.endswith("loss") or k == "lr"}
  return steps


def test_stage_both_end_to_end(env, tmp_path, caplog):
  """Intermediate losses for the first half, then the soft labels, with the
  learning rate restarting; projections in the checkpoint, not the export."""
  caplog.set_level(logging.INFO, logger="absl")
  out = tmp_path / "out"
  run(env, out, do_train=True, do_export=True, num_train_epochs=2,
      export_dir=str(tmp_path / "export"), stage="both",
      intermediate_losses="embedding,hidden,attention",
      intermediate_fraction=0.5)
  assert "prediction stage from step 13" in caplog.text
  logs = step_logs(caplog.text)
  assert sorted(logs) == list(range(1, 25))  # 96 examples / 8 * 2 epochs
  for step, metrics in logs.items():
    if step <= 12:
      assert metrics["hidden_loss"] > 0 and metrics["attention_loss"] > 0
      assert metrics["embedding_loss"] > 0 and metrics["soft_loss"] == 0
    else:
      assert metrics["hidden_loss"] == 0 and metrics["soft_loss"] > 0
  # One warm-up step per stage: the rate is 0 at the start of each stage.
  assert logs[1]["lr"] == 0 and logs[13]["lr"] == 0
  assert logs[12]["lr"] > 0 and logs[14]["lr"] > logs[12]["lr"]

  checkpoint = tf.train.latest_checkpoint(str(out))
  names = {n for n, _ in tf.train.list_variables(checkpoint)}
  for kernel in ("distill/hidden_projection/kernel",
                 "distill/embedding_projection/kernel"):
    assert {kernel, f"{kernel}/adam_m", f"{kernel}/adam_v"} <= names
  assert dict(tf.train.list_variables(checkpoint))[
      "distill/hidden_projection/kernel"] == [16, 32]

  (exported,) = glob.glob(str(tmp_path / "export" / "*"))
  saved = [n for n, _ in tf.train.list_variables(
      os.path.join(exported, "variables", "variables"))]
  assert saved and not [n for n in saved if "projection" in n]
  loaded = tf.saved_model.load(exported)
  model_names = [v.name for v in loaded.model_variables]
  assert "output_weights:0" in model_names
  assert not [n for n in model_names if n.startswith("distill/")]
  assert export_reader.read_export_info(exported)["stage"] == "both"


def test_resume_keeps_the_projections(env, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  out = tmp_path / "out"
  flags = {"stage": "intermediate", "intermediate_losses": "hidden",
           "do_train": True}
  run(env, out, **flags)
  reader = tf.train.load_checkpoint(str(out))  # After step 12.
  kernel = reader.get_tensor("distill/hidden_projection/kernel")
  run(env, out, num_train_epochs=2, **flags)
  assert "Resuming from" in caplog.text and "at step 12" in caplog.text
  logs = step_logs(caplog.text)
  assert set(range(13, 25)) <= set(logs)
  # Only the hidden loss was asked for: no embedding projection.
  names = {n for n, _ in tf.train.list_variables(str(out))}
  assert "distill/embedding_projection/kernel" not in names
  later = tf.train.load_checkpoint(str(out)).get_tensor(
      "distill/hidden_projection/kernel")
  assert not np.allclose(kernel, later)


def test_general_then_task_distillation(env, tmp_path, caplog):
  """The intermediate stage on unlabelled text alone; its checkpoint starts
  a task distillation run, projections included."""
  caplog.set_level(logging.INFO, logger="absl")
  corpus = tmp_path / "corpus.txt"
  words = ["good", "bad", "好", "差"] * 10
  corpus.write_text("".join(f"the cat sat on the mat {w}\n" for w in words),
                    encoding="utf-8")
  general = tmp_path / "general"
  files = {"vocab_file": env["files"]["vocab_file"]}  # No --data_dir.
  helpers.run_main(
      distill.main, task_name="emotion", max_seq_length=SEQ,
      train_batch_size=8, num_train_epochs=1, learning_rate=1e-3,
      bert_config_file=env["student"], teacher_model=env["teacher"],
      output_dir=str(general), do_train=True, stage="intermediate",
      intermediate_losses="embedding,hidden,attention",
      transfer_file=str(corpus), train_on_transfer_only=True, **files)
  assert "Transfer set: 40 unlabelled examples" in caplog.text
  general_ckpt = tf.train.latest_checkpoint(str(general))
  assert general_ckpt.endswith("model.ckpt-5")
  caplog.clear()
  task = tmp_path / "task"
  run(env, task, do_train=True, stage="both",
      intermediate_losses="embedding,hidden", learning_rate=0.0,
      init_checkpoint=str(general))
  student = modeling.BertClassifier(
      modeling.BertConfig.from_json_file(env["student"]), 2)
  assert (f"Loaded {len(modeling.variables_by_name(student))} variables "
          f"from {general_ckpt}") in caplog.text
  assert "Projections from" in caplog.text
  # With a zero learning rate the weights stay those of the general run.
  before = tf.train.load_checkpoint(general_ckpt)
  after = tf.train.load_checkpoint(str(task))
  for name in ("bert/encoder/layer_0/attention/self/query/kernel",
               "distill/hidden_projection/kernel"):
    np.testing.assert_array_equal(after.get_tensor(name),
                                  before.get_tensor(name), err_msg=name)


@pytest.mark.parametrize("flags, message", [
    ({"bert_config_file": "two_heads", "stage": "intermediate",
      "intermediate_losses": "hidden,attention"},
     "student has 2 heads, teacher 4; --intermediate_losses=attention needs "
     "equal heads"),
    ({"stage": "both", "intermediate_losses": "hidden", "layer_map": "0,1"},
     "--layer_map=0,1 lists 2 teacher layers but the student has 1"),
    ({"intermediate_losses": "hidden"},
     "--intermediate_losses=hidden needs --stage=intermediate"),
    ({"stage": "intermediate", "intermediate_losses": "hidden",
      "teacher_model": "bilstm"}, "has no 'intermediate' signature"),
    ({"train_on_transfer_only": True},
     "--train_on_transfer_only needs --transfer_file"),
])
def test_misuse_stops_before_training(env, tmp_path, flags, message):
  if flags.get("bert_config_file") == "two_heads":
    flags["bert_config_file"] = env["two_heads"]
  if flags.get("teacher_model") == "bilstm":
    model = bilstm.BiLstmClassifier(bilstm.BiLstmConfig(vocab_size=64), 2)
    flags["teacher_model"] = export.export_classifier(
        model, str(tmp_path / "bilstm"), vocab_file=env["files"]["vocab_file"],
        bert_config=model.config, label_list=["0", "1"], max_seq_length=SEQ,
        do_lower_case=True)
  out = tmp_path / "out"
  with pytest.raises(UserError) as error:
    run(env, out, do_train=True, **flags)
  assert message in str(error.value) and "\n" not in str(error.value)
  assert tf.train.latest_checkpoint(str(out)) is None
