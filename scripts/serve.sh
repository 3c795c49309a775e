#!/usr/bin/env bash
# Serves exported models side by side with TF Serving: REST on port 8501,
# gRPC on 8500, server-side batching, warm-up at load time.
#
#   bash scripts/serve.sh                    # teacher, student_plain, student
#   MODELS="student:export/student" bash scripts/serve.sh
#   SERVE_DRY_RUN=1 bash scripts/serve.sh    # write the configs, print commands
#
# MODELS is a space-separated list of name:export_base_path (default: those of
# export/teacher, export/student_plain and export/student that exist).  The
# script writes, under SERVING_DIR (default output/serving):
#   models.config          model_config_list for tensorflow_model_server
#   models.docker.config   the same with the paths inside the Docker container
#   batching_parameters.txt  --batching_parameters_file (BatchingParameters)
# then runs tensorflow_model_server when it is on PATH, or prints the exact
# tensorflow_model_server and docker commands and exits with status 1.
# An export made with --export_jit_compile runs through XLA, which TF Serving
# allows only with --xla_cpu_compilation_enabled=true: the script adds it
# when one of the exports asks for it.  PREFER_TFLITE=1 serves each model's
# TF Lite copy (model.tflite from python -m bert.quantize, int8 or float32)
# with --prefer_tflite_model=true: serving_default only, and without the
# warm-up replay (its predict_text requests need the SavedModel).
# TensorFlow runs one thread per op and one inter-op thread per core
# (INTRA_OP_THREADS, INTER_OP_THREADS), or its own choice for XLA exports.
# Each export carries assets.extra/tf_serving_warmup_requests, which
# --enable_model_warmup replays when a version loads, so the first client
# request does not pay for graph initialisation.  TF Serving loads the
# highest integer version of each base path and picks up new versions as
# they appear (exports are renamed into place when complete).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

SERVING_DIR="${SERVING_DIR:-$ROOT/output/serving}"
REST_PORT="${REST_PORT:-8501}"
GRPC_PORT="${GRPC_PORT:-8500}"
# Serving 2.17-2.19 embed tensorflow-text 2.12.1, whose ops cover the
# predict_text graph (NormalizeUTF8, WordpieceTokenizeWithOffsets); 2.20.0
# works too.  See bert/text_graph.py (SERVING_TEXT_OPS).
SERVING_IMAGE="${SERVING_IMAGE:-tensorflow/serving:2.19.0}"
# Server-side batching: requests that arrive within BATCH_TIMEOUT_MICROS are
# run as one batch of at most MAX_BATCH_SIZE, padded to the longest
# sequence (pad_variable_length_inputs: our inputs are [batch, seq] with a
# seq that varies per request).
MAX_BATCH_SIZE="${MAX_BATCH_SIZE:-32}"
BATCH_TIMEOUT_MICROS="${BATCH_TIMEOUT_MICROS:-2000}"
NUM_BATCH_THREADS="${NUM_BATCH_THREADS:-$(nproc)}"
# One thread per op, one inter-op thread per core (bert.export.
# serving_threads): each export runs its blocks of positions as concurrent
# branches, and oneDNN's small batch-1 kernels lose more handing work to a
# second thread than they gain (README, "Blocks and serving threads").
# With an XLA export among the models: TensorFlow's own choice (XLA's one op
# parallelises inside), unless these are set.
INTRA_OP_THREADS="${INTRA_OP_THREADS:-}"
INTER_OP_THREADS="${INTER_OP_THREADS:-}"

if [ -z "${MODELS:-}" ]; then
  MODELS=""
  for name in teacher student_plain student; do
    [ -d "$ROOT/export/$name" ] && MODELS="$MODELS $name:$ROOT/export/$name"
  done
fi
if [ -z "${MODELS// /}" ]; then
  echo "error: no export to serve (export/teacher, export/student_plain, export/student): run scripts/quickstart.sh or an export script, or set MODELS=name:path" >&2
  exit 2
fi

mkdir -p "$SERVING_DIR"
config="model_config_list {"
docker_config="model_config_list {"
mounts=()
XLA_FLAGS=()
for item in $MODELS; do
  name="${item%%:*}"
  path="${item#*:}"
  if [ "$name" = "$item" ] || [ -z "$name" ] || [ -z "$path" ]; then
    echo "error: MODELS: expected name:path, got '$item'" >&2
    exit 2
  fi
  if [ ! -d "$path" ]; then
    echo "error: $path (model $name) does not exist" >&2
    exit 2
  fi
  base="$(realpath "$path")"
  if ! ls "$base" | grep -qE '^[0-9]+$'; then  # A version dir: its parent.
    base="$(dirname "$base")"
  fi
  entry="name: \"$name\" model_platform: \"tensorflow\""
  config="$config
  config { $entry base_path: \"$base\" }"
  docker_config="$docker_config
  config { $entry base_path: \"/models/$name\" }"
  mounts+=(-v "$base:/models/$name:ro")
  if [ -n "${PREFER_TFLITE:-}" ]; then
    latest="$(ls "$base" | grep -E '^[0-9]+$' | sort -n | tail -1 || true)"
    if [ -z "$latest" ] || [ ! -f "$base/$latest/model.tflite" ]; then
      echo "error: PREFER_TFLITE: $base/$latest has no model.tflite (make it with python -m bert.quantize --export_dir=$base)" >&2
      exit 2
    fi
  fi
  if grep -qs '"jit_compile": true' "$base"/*/assets/export_info.json; then
    XLA_FLAGS=(--xla_cpu_compilation_enabled=true)
  fi
done
printf '%s\n}\n' "$config" > "$SERVING_DIR/models.config"
printf '%s\n}\n' "$docker_config" > "$SERVING_DIR/models.docker.config"
cat > "$SERVING_DIR/batching_parameters.txt" <<EOF
max_batch_size { value: $MAX_BATCH_SIZE }
batch_timeout_micros { value: $BATCH_TIMEOUT_MICROS }
num_batch_threads { value: $NUM_BATCH_THREADS }
max_enqueued_batches { value: 1000 }
pad_variable_length_inputs: true
EOF

if [ ${#XLA_FLAGS[@]} -eq 0 ]; then
  INTRA_OP_THREADS="${INTRA_OP_THREADS:-1}"
  INTER_OP_THREADS="${INTER_OP_THREADS:-$(nproc)}"
fi
SERVER_FLAGS=(--enable_batching)
[ -n "$INTRA_OP_THREADS" ] && SERVER_FLAGS+=(
  --tensorflow_intra_op_parallelism="$INTRA_OP_THREADS")
[ -n "$INTER_OP_THREADS" ] && SERVER_FLAGS+=(
  --tensorflow_inter_op_parallelism="$INTER_OP_THREADS")
if [ -n "${PREFER_TFLITE:-}" ]; then
  SERVER_FLAGS+=(--prefer_tflite_model=true)
else
  SERVER_FLAGS+=(--enable_model_warmup)
fi
SERVER_FLAGS+=(${XLA_FLAGS[@]+"${XLA_FLAGS[@]}"})
FLAGS=(--port="$GRPC_PORT" --rest_api_port="$REST_PORT" "${SERVER_FLAGS[@]}"
  --file_system_poll_wait_seconds=30)
if command -v tensorflow_model_server >/dev/null 2>&1 && [ -z "${SERVE_DRY_RUN:-}" ]; then
  echo "Serving$(printf ' %s' $MODELS) (REST :$REST_PORT, gRPC :$GRPC_PORT)"
  exec tensorflow_model_server "${FLAGS[@]}" \
    --model_config_file="$SERVING_DIR/models.config" \
    --batching_parameters_file="$SERVING_DIR/batching_parameters.txt"
fi

first="${MODELS# }"; first="${first%%:*}"; first="${first%% *}"
# The example request in the model's language: a vocab mostly of CJK
# characters (3-byte UTF-8 from U+4E00 on) is Chinese; an English vocab
# holds a few thousand of them too, so a share decides, not their presence.
first_path="${MODELS# }"; first_path="${first_path%% *}"; first_path="$(realpath "${first_path#*:}")"
vocab="$(ls "$first_path"/assets/vocab.txt "$first_path"/*/assets/vocab.txt 2>/dev/null | tail -1 || true)"
EXAMPLE_TEXT="This is a sample text to classify."
if [ -n "$vocab" ]; then
  cjk=$(LC_ALL=C grep -cE $'^[\xe4-\xe9][\x80-\xbf][\x80-\xbf]$' "$vocab" || true)
  total=$(wc -l < "$vocab")
  if [ "$total" -gt 0 ] && [ $(( 4 * cjk )) -gt "$total" ]; then
    EXAMPLE_TEXT="质量很好，非常满意！"
  fi
fi
cat <<MSG
Wrote $SERVING_DIR/models.config, models.docker.config and batching_parameters.txt.

With tensorflow_model_server on PATH:

  tensorflow_model_server ${FLAGS[*]} \\
    --model_config_file=$SERVING_DIR/models.config \\
    --batching_parameters_file=$SERVING_DIR/batching_parameters.txt

With Docker:

  docker run --rm -p $REST_PORT:8501 -p $GRPC_PORT:8500 ${mounts[*]} \\
    -v $SERVING_DIR:/config:ro $SERVING_IMAGE \\
    ${SERVER_FLAGS[*]} \\
    --model_config_file=/config/models.docker.config \\
    --batching_parameters_file=/config/batching_parameters.txt

then, for example:

  curl -s -X POST http://localhost:$REST_PORT/v1/models/$first:predict \\
    -d '{"signature_name": "predict_text", "instances": ["$EXAMPLE_TEXT"]}'

Without a server, saved_model_cli runs the same signatures here:

  source "$ROOT/scripts/setup_env.sh"
  saved_model_cli run --dir <export>/<version> --tag_set serve --signature_def predict_text \\
    --input_exprs 'text=["$EXAMPLE_TEXT"]'

or classify lines of text with: bash scripts/predict.sh < texts.txt
MSG
[ -n "${SERVE_DRY_RUN:-}" ] && exit 0
exit 1
