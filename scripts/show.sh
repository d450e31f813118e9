# shellcheck shell=bash
# How the scripts show the commands they run (sourced by cluster.sh, build_images.sh and
# cluster_e2e.sh): one line per command, `+ ` first, each word quoted so that the line
# pastes into bash and zsh (macOS's shell) alike.

quote() {  # a word as both shells read it back: bare when safe, else in single quotes
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

show() {  # show COMMAND...: prints it as it would be typed
  local line="" word
  for word in "$@"; do line+="$(quote "$word") "; done
  echo "+ ${line% }"
}

show_pipe() {  # show_pipe COMMAND... "|" COMMAND...: a pipeline, each command quoted
  local line="" word
  for word in "$@"; do
    if [[ "$word" == "|" ]]; then line+="| "; else line+="$(quote "$word") "; fi
  done
  echo "+ ${line% }"
}
