#!/usr/bin/env bash
# Parses --option value pairs into shell variables; source it after declaring the
# defaults:
#   nj=4            # parallel jobs
#   . utils/parse_options.sh
# --foo-bar value sets foo_bar. An option that no variable declares, a missing value,
# a non-boolean value for a variable whose default is true/false, or a value that is
# not a number for a variable whose default is one (--stage abc) is an error:
# a typo must never be silently ignored. --help prints $help_message (if set).
# What remains in "$@" afterwards are the positional arguments.

__po_script=$(basename "$0")
__po_die() { echo "$__po_script: $*" >&2; [ -n "${help_message:-}" ] && echo "$help_message" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "${help_message:-Usage: $__po_script [options] (no usage text declared)}" >&2
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
unset __po_name __po_value __po_var __po_old __po_known
true
