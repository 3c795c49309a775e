# Checks shared by the settings files (sourced): each prints one line naming
# what is wrong and what to do, and exits before Python loads TensorFlow.

# check_model_dir: MODEL_DIR, when set, must be Google's layout (vocab.txt,
# bert_config.json, bert_model.ckpt); a Hugging Face folder is converted
# first, since the scripts read Google's files.
check_model_dir() {
  [ -n "${MODEL_DIR:-}" ] || return 0
  if [ ! -d "$MODEL_DIR" ]; then
    echo "error: MODEL_DIR=$MODEL_DIR: no such directory (expected Google's BERT release: vocab.txt, bert_config.json, bert_model.ckpt)" >&2
    exit 2
  fi
  if [ -f "$MODEL_DIR/bert_config.json" ]; then
    return 0
  fi
  if [ -f "$MODEL_DIR/config.json" ]; then
    echo "error: MODEL_DIR=$MODEL_DIR is a Hugging Face folder (config.json, no bert_config.json): convert it first with python -m bert.convert_checkpoint --hf_dir=$MODEL_DIR --output_dir=<new dir>, then set MODEL_DIR=<new dir>" >&2
  else
    echo "error: MODEL_DIR=$MODEL_DIR has no bert_config.json (expected Google's BERT release: vocab.txt, bert_config.json, bert_model.ckpt; a Hugging Face folder converts with python -m bert.convert_checkpoint --hf_dir=...)" >&2
  fi
  exit 2
}

# check_task_options ARGS...: column options belong to the csv/tsv/jsonl
# tasks; without TASK_NAME the scripts' default task is emotion, which
# takes none, and Python's error would name a task the user never chose.
check_task_options() {
  [ -z "${TASK_NAME:-}" ] || return 0
  local arg
  for arg in "$@"; do
    case "$arg" in
      --text_column*|--text_b_column*|--label_column*|--labels=*|--labels|--has_header*|--nohas_header)
        echo "error: ${arg%%=*} is a csv/tsv/jsonl task option, but TASK_NAME is not set and defaults to emotion: set TASK_NAME=csv (or tsv, jsonl)" >&2
        exit 2 ;;
    esac
  done
}

# check_run_record WHAT TRAIN_SCRIPT ARGS...: an export reads its settings
# from OUTPUT_DIR/run_config.json, which training wrote.
check_run_record() {
  local what=$1 train_script=$2; shift 2
  [ ! -f "$OUTPUT_DIR/run_config.json" ] || return 0
  case " $* " in *" --task_name"*) return 0 ;; esac  # Settings given by hand.
  echo "error: no run record $OUTPUT_DIR/run_config.json: train the $what there first (bash scripts/$train_script), or set OUTPUT_DIR to the folder it was trained in (the default follows MODEL_DIR: ${OUTPUT_DIR_DEFAULTS})" >&2
  exit 2
}
