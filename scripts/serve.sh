#!/usr/bin/env bash
# Serves an exported model over TF Serving's REST API (port 8501) and gRPC
# (port 8500):
#
#   bash scripts/serve.sh                        # export/student as "student"
#   EXPORT_DIR=export/teacher MODEL_NAME=teacher bash scripts/serve.sh
#
# Uses tensorflow_model_server when it is on PATH; otherwise prints the docker
# command that serves the same directory, and the saved_model_cli commands
# that run both signatures here, then exits with status 1.
# TF Serving loads the highest integer version under EXPORT_DIR and picks up
# new versions as they appear (exports are renamed into place when complete).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/student}"
MODEL_NAME="${MODEL_NAME:-student}"
REST_PORT="${REST_PORT:-8501}"
GRPC_PORT="${GRPC_PORT:-8500}"
# Serving 2.17-2.19 embed tensorflow-text 2.12.1, whose ops cover the
# predict_text graph (NormalizeUTF8, WordpieceTokenizeWithOffsets); 2.20.0
# works too.  See bert/text_graph.py (SERVING_TEXT_OPS).
SERVING_IMAGE="${SERVING_IMAGE:-tensorflow/serving:2.19.0}"

if [ ! -d "$EXPORT_DIR" ]; then
  echo "error: $EXPORT_DIR does not exist: run scripts/quickstart.sh or an export script first" >&2
  exit 2
fi
BASE="$(realpath "$EXPORT_DIR")"
if ls "$BASE" | grep -qE '^[0-9]+$'; then
  VERSION="$BASE/$(ls "$BASE" | grep -E '^[0-9]+$' | sort -n | tail -1)"
else  # A version directory itself: serve its parent.
  VERSION="$BASE"
  BASE="$(dirname "$BASE")"
fi

if command -v tensorflow_model_server >/dev/null 2>&1; then
  echo "Serving $BASE as $MODEL_NAME: REST http://localhost:$REST_PORT/v1/models/$MODEL_NAME, gRPC :$GRPC_PORT"
  exec tensorflow_model_server --port="$GRPC_PORT" --rest_api_port="$REST_PORT" \
    --model_name="$MODEL_NAME" --model_base_path="$BASE"
fi

cat <<MSG
tensorflow_model_server is not on PATH. To serve $BASE with Docker:

  docker run --rm -p $REST_PORT:8501 -p $GRPC_PORT:8500 \\
    -v "$BASE:/models/$MODEL_NAME" -e MODEL_NAME=$MODEL_NAME $SERVING_IMAGE

then, for example:

  curl -s -X POST http://localhost:$REST_PORT/v1/models/$MODEL_NAME:predict \\
    -d '{"signature_name": "predict_text", "instances": ["质量很好，非常满意！"]}'

Without a server, saved_model_cli runs the same signatures on $VERSION
(the in-graph WordPiece tokenizer uses core TensorFlow ops only):

  source "$ROOT/scripts/setup_env.sh"
  saved_model_cli run --dir "$VERSION" --tag_set serve --signature_def predict_text \\
    --input_exprs 'text=["质量很好，非常满意！"]'

  saved_model_cli run --dir "$VERSION" --tag_set serve --signature_def serving_default \\
    --input_exprs 'input_ids=[[2, 11, 12, 3]];input_mask=[[1, 1, 1, 1]];segment_ids=[[0, 0, 0, 0]]'

or classify lines of text with: bash scripts/predict.sh < reviews.txt
MSG
exit 1
