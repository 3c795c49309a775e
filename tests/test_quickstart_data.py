"""The quickstart on the user's own data (DATA_DIR=...): format detection,
validation, the run's vocab and sized configs (bert/prepare_data.py
--user_data_dir), and scripts/quickstart.sh's data step with
QUICKSTART_DRY_RUN, which stops before any training."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from bert import char_vocab
from bert import prepare_data
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [os.path.join(ROOT, "configs", n)
           for n in ("teacher_3l_config.json", "student_2l_config.json")]
TEXTS = ["好吃，送餐也快", "太难吃了，差评", "味道不错 OK", "又冷又咸，不会再点",
         "分量足，好吃", "送了一个多小时，差", "A&W 的汉堡好吃", "难吃"]
LABELS = ["1", "0", "1", "0", "1", "0", "1", "0"]


def _emotion_dir(path, test=True):
  path.mkdir()
  lines = "".join(f"{t}&{l}\n" for t, l in zip(TEXTS, LABELS))
  for split in ("train", "dev") + (("test",) if test else ()):
    (path / f"{split}.csv").write_text(lines, encoding="utf-8")
  return path


def _csv_dir(path, test=False):
  path.mkdir()
  for split in ("train", "dev") + (("test",) if test else ()):
    with open(path / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["id", "label", "text"])
      for i, (t, l) in enumerate(zip(TEXTS, LABELS)):
        writer.writerow([i, {"0": "neg", "1": "pos"}[l], t + ",\n第二行"])
  return path


def _listing(path):
  """Every file under `path` (relative name -> bytes)."""
  return {os.path.relpath(os.path.join(d, n), path):
          open(os.path.join(d, n), "rb").read()
          for d, _, names in os.walk(path) for n in names}


def _source_plan(output_dir):
  """The plan file's variables as bash sees them after sourcing it."""
  out = subprocess.run(
      ["bash", "-c", 'source "$1"; printf "%s\\n" "$TASK_NAME" "$VOCAB_FILE" '
       '"$VOCAB_SIZE" "$HAS_TEST" "$SEQ_LENGTH" "${SIZED_CONFIGS[@]}"', "-",
       os.path.join(output_dir, prepare_data.PLAN_FILE)],
      check=True, capture_output=True, text=True).stdout
  return out.splitlines()


def test_emotion_folder_gets_vocab_configs_and_plan(tmp_path, capsys):
  data = _emotion_dir(tmp_path / "my data")
  before = _listing(data)
  out = tmp_path / "out"
  plan = prepare_data.prepare_user_data(str(data), str(out), CONFIGS)
  printed = capsys.readouterr().out
  assert printed.startswith(f"detected: {data}: the emotion task's")
  assert "8 train, 8 dev, 8 test; labels 0, 1" in printed.splitlines()[0]
  assert _listing(data) == before  # Nothing written into the user's folder.

  vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
  assert vocab == char_vocab.build_vocab(TEXTS, 2, True)
  assert plan["TASK_NAME"] == "emotion" and plan["HAS_TEST"] == 1
  assert plan["VOCAB_SIZE"] == len(vocab)
  for source, sized in zip(CONFIGS, plan["SIZED_CONFIGS"]):
    assert sized == str(out / "configs" / os.path.basename(source))
    with open(source) as f:
      expected = {**json.load(f), "vocab_size": len(vocab)}
    with open(sized) as f:
      assert json.load(f) == expected
  assert _source_plan(out) == [
      "emotion", str(out / "vocab.txt"), str(len(vocab)), "1", "32",
      *plan["SIZED_CONFIGS"]]
  # The predictions' samples: the first dev texts, one a line.
  assert (out / "sample_texts.txt").read_text(
      encoding="utf-8").splitlines() == TEXTS[:prepare_data.NUM_SAMPLES]

  # A re-run finds everything in place.
  written = _listing(out)
  assert prepare_data.prepare_user_data(str(data), str(out), CONFIGS) == plan
  assert _listing(out) == written


def test_a_pre_trained_models_vocab_is_used_when_it_fits(tmp_path, capsys):
  data = _emotion_dir(tmp_path / "d")
  model = tmp_path / "model"
  model.mkdir()
  fits = model / "vocab.txt"
  fits.write_text("\n".join(char_vocab.build_vocab(TEXTS, 1, True)) + "\n",
                  encoding="utf-8")
  plan = prepare_data.prepare_user_data(str(data), str(tmp_path / "a"),
                                        CONFIGS, model_vocab=str(fits))
  assert plan["VOCAB_FILE"] == str(fits)
  assert "the pre-trained model's" in capsys.readouterr().out
  assert not (tmp_path / "a" / "vocab.txt").exists()
  with open(plan["SIZED_CONFIGS"][0]) as f:
    assert json.load(f)["vocab_size"] == len(fits.read_text().splitlines())

  # One that leaves more than 1% of the characters [UNK] is not used.
  narrow = tmp_path / "narrow.txt"
  narrow.write_text("\n".join(char_vocab.build_vocab(TEXTS[:2], 1, True))
                    + "\n", encoding="utf-8")
  plan = prepare_data.prepare_user_data(str(data), str(tmp_path / "b"),
                                        CONFIGS, model_vocab=str(narrow))
  assert plan["VOCAB_FILE"] == str(tmp_path / "b" / "vocab.txt")
  assert "building a vocab of the data instead" in capsys.readouterr().out
  with pytest.raises(UserError, match="nothere.txt: file not found"):
    prepare_data.prepare_user_data(str(data), str(tmp_path / "c"), CONFIGS,
                                   model_vocab=str(tmp_path / "nothere.txt"))


def test_csv_folder_without_test_and_own_vocab(tmp_path, capsys):
  data = _csv_dir(tmp_path / "reviews")
  out = tmp_path / "out"
  plan = prepare_data.prepare_user_data(str(data), str(out), CONFIGS)
  line = capsys.readouterr().out.splitlines()[0]
  assert "csv task" in line and "8 train, 8 dev, no test.csv" in line
  assert line.endswith("labels neg, pos")
  assert plan["TASK_NAME"] == "csv" and plan["HAS_TEST"] == 0
  # Multi-line texts become one line each for predict.
  samples = (out / "sample_texts.txt").read_text(encoding="utf-8")
  assert samples.splitlines()[0] == "好吃，送餐也快, 第二行"

  # The folder's own vocab.txt is used as it is, and none is built.
  own = _csv_dir(tmp_path / "with_vocab")
  (own / "vocab.txt").write_text(
      "\n".join(char_vocab.build_vocab(TEXTS, 1, True)) + "\n",
      encoding="utf-8")
  plan = prepare_data.prepare_user_data(str(own), str(tmp_path / "out2"),
                                        CONFIGS)
  assert plan["VOCAB_FILE"] == str(own / "vocab.txt")
  assert not (tmp_path / "out2" / "vocab.txt").exists()
  with open(plan["SIZED_CONFIGS"][1]) as f:
    assert json.load(f)["vocab_size"] == len(
        char_vocab.build_vocab(TEXTS, 1, True))


@pytest.mark.parametrize("setup,message", [
    (lambda d: (d / "dev.csv").unlink(), r"/dev\.csv: file not found"),
    (lambda d: (d / "dev.csv").write_text("好&1\nno separator\n",
                                          encoding="utf-8"),
     r"/dev\.csv:2: no '&' separator"),
    (lambda d: (d / "test.csv").write_bytes(b"ok&1\n\xff&0\n"),
     r"/test\.csv:2: not valid UTF-8"),
    (lambda d: (d / "train.csv").write_text("\nreview,score\n好,1\n",
                                            encoding="utf-8"),
     r"/train\.csv:2: neither a `text&label` line"),
    (lambda d: (d / "train.csv").write_text("好&1\n行&1\n", encoding="utf-8"),
     r"/train\.csv: every example has the label '1'"),
    (lambda d: (d / "train.csv").write_text("好&1\n差&2\n", encoding="utf-8"),
     r"/train\.csv:2: label '2': the emotion task takes two labels only"),
])
def test_bad_folders_stop_naming_file_and_line(tmp_path, setup, message):
  data = _emotion_dir(tmp_path / "d")
  setup(data)
  with pytest.raises(UserError, match=message) as e:
    prepare_data.prepare_user_data(str(data), str(tmp_path / "out"), CONFIGS)
  assert "\n" not in str(e.value)
  assert not (tmp_path / "out").exists()  # Stopped before writing.


def test_csv_dev_in_the_other_format_names_its_line(tmp_path):
  data = _csv_dir(tmp_path / "d")
  (data / "dev.csv").write_text("好&1\n差&0\n", encoding="utf-8")
  with pytest.raises(UserError, match=r"/dev\.csv:1: no text column .text. in the header"):
    prepare_data.prepare_user_data(str(data), str(tmp_path / "out"), CONFIGS)


def test_output_dir_is_never_shared_between_datasets(tmp_path):
  a, b = _emotion_dir(tmp_path / "a"), _emotion_dir(tmp_path / "b")
  out = str(tmp_path / "out")
  prepare_data.prepare_user_data(str(a), out, CONFIGS)
  with pytest.raises(UserError, match=r"data_source\.json: .* was made from "
                     f".*{a}, not .*{b}"):
    prepare_data.prepare_user_data(str(b), out, CONFIGS)
  # Changed training data: the models there are not its models.
  with open(a / "train.csv", "a", encoding="utf-8") as f:
    f.write("新的一行&1\n")
  with pytest.raises(UserError, match=r"/a/train\.csv: changed since"):
    prepare_data.prepare_user_data(str(a), out, CONFIGS)
  # test.csv is not part of the fingerprint: training does not read it.
  (a / "train.csv").write_text("".join(
      f"{t}&{l}\n" for t, l in zip(TEXTS, LABELS)), encoding="utf-8")
  (a / "test.csv").unlink()
  assert prepare_data.prepare_user_data(str(a), out, CONFIGS)["HAS_TEST"] == 0
  # A folder holding some other run (the default quickstart's, say).
  other = tmp_path / "other"
  other.mkdir()
  (other / "teacher").mkdir()
  with pytest.raises(UserError, match="holds another run"):
    prepare_data.prepare_user_data(str(a), str(other), CONFIGS)


def test_choose_seq_length():
  tokenizer = type("T", (), {"tokenize": staticmethod(list)})()
  assert prepare_data.choose_seq_length(tokenizer, ["x" * 20] * 10, 512) == 32
  texts = ["x" * 20] * 8 + ["x" * 100] * 2  # 90% hold in 32, not the rest.
  assert prepare_data.choose_seq_length(tokenizer, texts, 512) == 128
  assert prepare_data.choose_seq_length(tokenizer, ["x" * 2000], 512) == 512
  assert prepare_data.choose_seq_length(tokenizer, ["x" * 300], 128) == 128


def test_main_prints_one_line_errors(tmp_path, capsys):
  data = _emotion_dir(tmp_path / "d")
  (data / "train.csv").unlink()
  with pytest.raises(SystemExit) as e:
    helpers.run_script_main(prepare_data, user_data_dir=data,
                            output_dir=tmp_path / "out",
                            sized_configs=",".join(CONFIGS))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "/d/train.csv: file not found" in err


@pytest.fixture
def shim_venv(tmp_path):
  """A VENV for setup_env.sh that runs this interpreter and finds the
  requirements installed, so the script installs nothing."""
  venv = tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  python = venv / "bin" / "python"
  python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
  python.chmod(0o755)
  out = subprocess.run(["sha256sum", os.path.join(ROOT, "requirements.txt")],
                       check=True, capture_output=True, text=True).stdout
  (venv / ".installed-requirements.txt.sha256").write_text(
      out.split()[0] + "\n")
  return venv


def _quickstart(env_extra, cwd):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith("QUICKSTART_") and k != "DATA_DIR"}
  env.update(env_extra)
  return subprocess.run(["bash", os.path.join(ROOT, "scripts", "quickstart.sh")],
                        env=env, cwd=cwd, capture_output=True, text=True,
                        timeout=120)


def test_quickstart_dry_run_on_both_formats(tmp_path, shim_venv):
  _emotion_dir(tmp_path / "lines")
  _csv_dir(tmp_path / "table", test=True)
  for name, task in (("lines", "emotion"), ("table", "csv")):
    out, exp = tmp_path / f"out_{name}", tmp_path / f"exp_{name}"
    # DATA_DIR relative to where the script is started.
    run = _quickstart({"VENV": str(shim_venv), "DATA_DIR": name,
                       "QUICKSTART_DRY_RUN": "1", "QUICKSTART_PRETRAINED": "",
                       "QUICKSTART_OUTPUT_DIR": str(out),
                       "QUICKSTART_EXPORT_DIR": str(exp)}, tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    detected = [l for l in lines if l.startswith("detected: ")]
    assert len(detected) == 1 and f"{tmp_path / name}:" in detected[0]
    plan = next(l for l in lines if l.startswith("plan: "))
    assert f"plan: task {task}, vocab {out}/vocab.txt" in plan
    assert f"teacher {out}/configs/teacher_3l_config.json (from scratch)" in plan
    assert "max_seq_length 32" in plan
    assert "stopping before training" in lines[-1]
    assert sorted(os.listdir(out)) == ["configs", "data_plan.sh",
                                       "data_source.json", "sample_texts.txt",
                                       "vocab.txt"]
    assert not exp.exists()

  # By default the pre-trained model's vocab fits these Chinese reviews, and
  # the teacher starts from the model.
  out = tmp_path / "out_pretrained"
  run = _quickstart({"VENV": str(shim_venv), "DATA_DIR": "lines",
                     "QUICKSTART_DRY_RUN": "1",
                     "QUICKSTART_OUTPUT_DIR": str(out)}, tmp_path)
  assert run.returncode == 0, run.stderr
  plan = next(l for l in run.stdout.splitlines() if l.startswith("plan: "))
  assert ("vocab models/snownlp_3l/vocab.txt, teacher "
          "models/snownlp_3l/bert_config.json (fine-tuned from "
          "models/snownlp_3l)") in plan
  assert "vocab.txt" not in os.listdir(out)


def test_quickstart_stops_on_a_bad_folder_before_writing(tmp_path, shim_venv):
  data = _emotion_dir(tmp_path / "shop")
  (data / "dev.csv").unlink()
  run = _quickstart({"VENV": str(shim_venv), "DATA_DIR": str(data)}, tmp_path)
  assert run.returncode == 2
  # The default places, named after the folder.
  assert "-> output/quickstart_shop" in run.stdout
  assert run.stderr.strip().splitlines()[-1] == (
      f"error: {data}/dev.csv: file not found (the dev split is required; "
      "test.csv is optional)")
  assert not os.path.exists(os.path.join(ROOT, "output", "quickstart_shop"))
  run = _quickstart({"VENV": str(shim_venv), "DATA_DIR": str(tmp_path / "no")},
                    tmp_path)
  assert run.returncode == 2
  assert run.stderr.strip() == f"error: DATA_DIR={tmp_path / 'no'}: no such folder"
