# shellcheck shell=bash
# Sourced by the stage scripts (packaging, image). `steps_begin LABEL` once;
# then `step NAME CMD...` runs CMD and records how long it took; at exit the
# steps' timings and the total are printed, with ok or FAILED.

steps_begin() {
  steps_label=$1
  timings=()
  t_all=$SECONDS
  trap steps_report EXIT
}

step() {
  local name=$1; shift
  echo "--- $steps_label: $name"
  local t0=$SECONDS
  "$@"
  timings+=("$(printf '%-40s %5d s' "$name" $((SECONDS - t0)))")
}

steps_report() {
  local rc=$?
  echo "--- $steps_label timings"
  [ ${#timings[@]} -eq 0 ] || printf '%s\n' "${timings[@]}"
  printf '%-40s %5d s (%s)\n' "total" $((SECONDS - t_all)) "$([ $rc -eq 0 ] && echo ok || echo FAILED)"
}
