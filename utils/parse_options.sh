#!/usr/bin/env bash
# Parses --option value pairs into shell variables; source it after declaring the
# defaults:
#   nj=4            # parallel jobs
#   . utils/parse_options.sh
# --foo-bar value sets foo_bar. An option that no variable declares, a missing value,
# a non-boolean value for a variable whose default is true/false, or a value that is
# not a number for a variable whose default is one (--stage abc) is an error:
# a typo must never be silently ignored. What remains in "$@" afterwards are the
# positional arguments.
#
# --help prints $help_message when the script sets one; otherwise the script's
# header comment (its lines after the shebang up to the first other line) and
# its options: the 'name=value  # comment' lines above the line that sources
# this file, read from the script itself.
#
# A recipe (a script named run.sh that declares stage and stop_stage) takes
# options only: a word left over (bash run.sh 3) is an error. Where stage and
# stop_stage are both declared, a range that selects none of the script's
# stages (its '[ $stop_stage -ge N ]' tests) is an error too: --stage 4
# --stop-stage 2, or --stage 7 in a recipe whose last stage is 6.

__po_script=$(basename "$0")
__po_file=${BASH_SOURCE[1]:-$0}  # the script that sources this file
__po_die() { echo "$__po_script: $*" >&2; [ -n "${help_message:-}" ] && echo "$help_message" >&2; exit 1; }

__po_is_recipe() {
  [ "$(basename "$__po_file")" = run.sh ] && [ -n "${stage+set}" ] && [ -n "${stop_stage+set}" ]
}

# The header comment, then each declared option with its default and comment.
__po_help() {
  local line name value comment header=true blank=false printed=false n=0
  if __po_is_recipe || [ ! -r "$__po_file" ]; then echo "Usage: $__po_script [options]"; fi
  [ -r "$__po_file" ] || return 0
  while IFS= read -r line; do
    n=$((n + 1))
    if $header; then
      if [ $n -eq 1 ] && [[ "$line" == '#!'* ]]; then continue; fi
      if [[ "$line" == '#'* ]]; then line=${line#\#}; echo "${line# }"; continue; fi
      header=false
      printf '\nOptions (--name value; the defaults as %s declares them):\n' "$__po_script"
    fi
    [[ "$line" =~ ^[[:space:]]*(\.|source)[[:space:]]+([^[:space:]]*/)?parse_options\.sh ]] && break
    if [ -z "${line//[[:space:]]/}" ]; then blank=$printed; continue; fi
    if [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      name=${BASH_REMATCH[1]}
      value=${BASH_REMATCH[2]%%[[:space:]]#*}  # up to the first ' #': a comment starts there
      comment=${BASH_REMATCH[2]:${#value}}
      comment=${comment#"${comment%%[![:space:]]*}"}
      value=${value%"${value##*[![:space:]]}"}
      if [[ "$value" == *'$'* ]]; then value="$value (= ${!name-})"; fi
      line="--${name//_/-} $value"
      [ -z "$comment" ] || line=$(printf '%-34s %s' "$line" "$comment")
    elif [[ "$line" =~ ^[[:space:]]+# ]]; then  # a comment continued under the one above
      line=$(printf '%-34s %s' "" "${line#"${line%%[![:space:]]*}"}")
    elif [[ "$line" != '#'* ]]; then
      continue  # code: set -e, . ./path.sh, ...
    fi
    if $blank; then echo; blank=false; fi
    echo "  $line"
    printed=true
  done < "$__po_file"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then echo "$help_message"; else __po_help; fi
      exit 0 ;;
    --)
      shift; break ;;
    --*=*)
      __po_name=${1%%=*}; __po_value=${1#*=}; shift ;;
    --*)
      __po_name=$1
      [ $# -ge 2 ] || __po_die "option $1 needs a value (e.g. $1 VALUE)"
      __po_value=$2; shift 2 ;;
    *)
      break ;;
  esac
  __po_var=${__po_name#--}
  __po_var=${__po_var//-/_}
  [[ "$__po_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || __po_die "invalid option name '$__po_name'"
  if [ -z "${!__po_var+set}" ]; then
    __po_known=$(declare -p 2>/dev/null | sed -n 's/^declare -- \([a-z][a-z0-9_]*\)=.*/\1/p' | grep -v '^__po_' | tr '_' '-' | sed 's/^/--/' | tr '\n' ' ')
    __po_die "unknown option '$__po_name' (this script takes: $__po_known)"
  fi
  __po_old=${!__po_var}
  if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
    [ "$__po_value" = true ] || [ "$__po_value" = false ] || \
      __po_die "option $__po_name takes true or false, not '$__po_value'"
  fi
  if [[ "$__po_old" =~ ^-?[0-9]+$ ]]; then
    [[ "$__po_value" =~ ^-?[0-9]+$ ]] || \
      __po_die "option $__po_name takes a whole number, not '$__po_value'"
  elif [[ "$__po_old" =~ ^-?[0-9]*\.[0-9]+$ ]]; then
    [[ "$__po_value" =~ ^-?([0-9]+|[0-9]*\.[0-9]+)$ ]] || \
      __po_die "option $__po_name takes a number, not '$__po_value'"
  fi
  printf -v "$__po_var" '%s' "$__po_value"
done

if __po_is_recipe && [ $# -gt 0 ]; then
  if [[ "$1" =~ ^[0-9]+$ ]]; then
    __po_die "takes options only, not '$*' (one stage: --stage $1 --stop-stage $1)"
  fi
  __po_die "takes options only, not '$*' (bash $__po_script --help lists them)"
fi

if [[ "${stage:-}" =~ ^-?[0-9]+$ ]] && [[ "${stop_stage:-}" =~ ^-?[0-9]+$ ]]; then
  # the stage numbers of the script's '[ $stop_stage -ge N ]' tests
  __po_stages=$(grep -oE '\$\{?stop_stage\}?"?[[:space:]]+-ge[[:space:]]+[0-9]+' "$__po_file" 2>/dev/null \
                | grep -oE '[0-9]+$' | sort -nu | tr '\n' ' ' || true)
  __po_stages=${__po_stages% }
  __po_last=${__po_stages##* }
  if [ -n "$__po_stages" ] && [ "$stage" -gt "$__po_last" ]; then
    __po_die "--stage $stage: the last stage is $__po_last (stages: $__po_stages)"
  fi
  [ "$stage" -le "$stop_stage" ] || \
    __po_die "--stage $stage is after --stop-stage $stop_stage: no stage would run"
  __po_selected=false
  for __po_n in $__po_stages; do
    if [ "$__po_n" -ge "$stage" ] && [ "$__po_n" -le "$stop_stage" ]; then __po_selected=true; fi
  done
  [ -z "$__po_stages" ] || $__po_selected || \
    __po_die "--stage $stage --stop-stage $stop_stage selects none of the stages ($__po_stages)"
fi
unset __po_name __po_value __po_var __po_old __po_known __po_stages __po_last __po_selected __po_n
unset -f __po_help __po_is_recipe
true
