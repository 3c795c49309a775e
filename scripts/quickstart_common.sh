#!/usr/bin/env bash
# What both quickstarts (quickstart.sh, quickstart_minilm.sh) share: stage
# timing and the checks that let a re-run skip finished models.  Sourced,
# after `cd` to the repository; starts the clock.

START=$(date +%s)
# Each stage's wall time, written by `write_times`.
STAGES=()
STAGE_NAME="setup (.venv, requirements)"
STAGE_START=$START
elapsed() { local s=$(( $(date +%s) - START )); printf '%d:%02d' $((s / 60)) $((s % 60)); }
# step LABEL MESSAGE: ends the current stage and starts LABEL.
step() {
  local now s
  now=$(date +%s); s=$((now - STAGE_START))
  STAGES+=("| $STAGE_NAME | $((s / 60)):$(printf '%02d' $((s % 60))) |")
  STAGE_NAME=$1 STAGE_START=$now
  echo; echo "=== [$(elapsed)] $2"
}

# write_times RUN OUTPUT_DIR REPORT REPORT_MADE: the stages' wall times to
# OUTPUT_DIR/time.md, appended to REPORT when this run measured it.
write_times() {
  {
    echo "## Where the time went ($1 run of $(date '+%Y-%m-%d %H:%M'))"
    echo
    echo "| stage | wall time |"
    echo "|---|---|"
    printf '%s\n' "${STAGES[@]}"
    echo "| total | $(elapsed) |"
  } > "$2/time.md"
  if [ -n "$4" ]; then
    { echo; cat "$2/time.md"; } >> "$3"
  fi
  cat "$2/time.md"
}

# Highest integer version under an export base path ("" if none).
latest_version() {
  local v
  v=$(ls "$1" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
  if [ -n "$v" ]; then echo "$1/$v"; fi
}

# The index file of the newest checkpoint of an output dir ("" if none).
latest_checkpoint() {
  local prefix
  prefix=$(sed -n 's/^model_checkpoint_path: "\(.*\)"$/\1/p' "$1/checkpoint" 2>/dev/null || true)
  [ -n "$prefix" ] || return 0
  case "$prefix" in /*) ;; *) prefix="$1/$prefix" ;; esac
  if [ -f "$prefix.index" ]; then echo "$prefix.index"; fi
}

# True when export base $2 has a version written after output dir $1's last
# checkpoint.
export_is_current() {
  local ckpt version
  ckpt=$(latest_checkpoint "$1")
  version=$(latest_version "$2")
  [ -n "$ckpt" ] && [ -n "$version" ] && [ "$version/saved_model.pb" -nt "$ckpt" ]
}

# True when report $1 is newer than the latest export of each of teacher,
# student_plain and student under export base $2.
report_is_current() {
  local name v
  [ -f "$1" ] || return 1
  for name in teacher student_plain student; do
    v=$(latest_version "$2/$name")
    [ -n "$v" ] && [ "$1" -nt "$v/saved_model.pb" ] || return 1
  done
}
