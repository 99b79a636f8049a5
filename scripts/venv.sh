# shellcheck shell=bash
# Sourced by local-aws.sh and deploy-tools.sh: one pinned Python venv, installed once.
#
#   pinned_venv VENV "PINS" "what to say while installing"
#
# Installs PINS (requirement specifiers) into VENV unless VENV/.tugboat-pins already holds
# exactly PINS. Tests call the scripts from several processes at once: one installs under a
# lock beside the venv and the others wait, then find it installed (two `python3 -m venv` on
# one folder fail with "File exists"). A half-made venv (no pins file) is made again.
pinned_venv() {
  local venv="$1" pins="$2" saying="$3"
  _pinned() { [ -f "$venv/.tugboat-pins" ] && [ "$(cat "$venv/.tugboat-pins")" = "$pins" ]; }
  _pinned && return 0
  exec 9>"$venv.lock"
  flock 9
  if ! _pinned; then
    echo "$saying" >&2
    python3 -m venv --clear "$venv"
    # shellcheck disable=SC2086 # $pins is a list of requirement specifiers.
    "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
    echo "$pins" > "$venv/.tugboat-pins"
  fi
  exec 9>&- # unlock: a server started after this must not hold the lock
}
