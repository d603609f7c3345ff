#!/usr/bin/env bash
# Stage 1: 80-dim fbank features for a data dir, in nj parallel jobs: Kaldi's
# (--feature-type kaldi, the default) or the original work's SpeechBrain front
# end (--feature-type speechbrain, purl/features.py).
# Takes Kaldi's arguments: <data-dir> [<log-dir> [<fbank-dir>]] (defaults
# <data-dir>/log and <data-dir>/data). Writes compressed arks under
# <fbank-dir>/<name>_<hash of the data dir's path>/ (two data dirs never share
# arks), and <data-dir>/{feats.scp,utt2num_frames,feats.settings} (plus utt2dur
# where the dir had none). feats.settings records the options and the audio the
# features were made from: a rerun skips the dir only when they are the same,
# and redoes only the jobs whose own record differs. Utterances that cannot be
# read or are shorter than --min-frames are listed in <data-dir>/log/fbank_failed;
# up to --max-fail-frac of them are dropped from the dir (old files in .backup/),
# more, or one named by a trial list, fail the stage.
set -euo pipefail
[ -n "${PURL_ROOT:-}" ] || . "$(dirname "$(readlink -f "$0")")/../path.sh"  # called outside a recipe

nj=4                   # parallel jobs
cmd=run_jobs.sh        # job runner: run_jobs.sh, slurm.sh, or Kaldi's run.pl/queue.pl/slurm.pl
sample_rate=16000
num_mel_bins=80
compress=true
min_frames=10          # utterances with fewer frames (0.1 s) are dropped
feature_type=kaldi     # kaldi or speechbrain
max_fail_frac=0.01     # fraction of utterances that may fail before the stage does
help_message="Usage: $0 [options] <data-dir> [<log-dir> [<fbank-dir>]]
 e.g.: $0 --nj 8 data/vox2_dev data/vox2_dev/log fbank
Options:
  --nj N               parallel jobs ($nj)
  --cmd CMD            job runner ($cmd)
  --sample-rate HZ     expected sample rate ($sample_rate)
  --num-mel-bins N     ($num_mel_bins)
  --compress BOOL      Kaldi-compress the arks ($compress)
  --min-frames N       drop shorter utterances ($min_frames)
  --feature-type T     kaldi or speechbrain ($feature_type)
  --max-fail-frac F    ($max_fail_frac)"

. parse_options.sh
[ $# -ge 1 ] && [ $# -le 3 ] || { echo "$help_message" >&2; exit 1; }
data=$1
log_dir=${2:-$data/log}
fbank_root=${3:-$data/data}
script=$(basename "$0")
steps=$(dirname "$0")
opts=(--sample-rate "$sample_rate" --num-mel-bins "$num_mel_bins" --compress "$compress" --min-frames "$min_frames"
      --feature-type "$feature_type")

# One run per data dir: a second stops here, naming the first (released when this script exits, also killed).
exec 9<>"$data/.purl.lock"
"$steps/lock_dir.py" 9 "$data" $$ "$0 $*" || exit 1

declare -A plan=()
while read -r key value; do plan[$key]=$value; done < <("$steps/fbank_jobs.py" "${opts[@]}" "$data" "$fbank_root" "$nj" || echo "failed 1")
[ -z "${plan[failed]:-}" ] || exit 1
nj=${plan[nj]}; fbank_dir=${plan[fbank_dir]}
if [ "${plan[status]}" = complete ]; then
  echo "$script: $data/feats.scp is complete; skipping (delete it to redo)"
  exit 0
fi
read -r -a todo <<< "${plan[todo]:-}"
mkdir -p "$log_dir"
echo "$script: $data: $(wc -l < "$data/wav.scp") utterances in $nj jobs (${#todo[@]} to run); arks in $fbank_dir, logs in $log_dir/make_fbank.*.log"
if [ ${#todo[@]} -gt 0 ]; then
  OMP_NUM_THREADS=1 run_job_ids.sh "$cmd" "${todo[*]}" "$log_dir/make_fbank.JOB.log" \
    "$steps/compute_fbank.py" "${opts[@]}" "$data/split$nj/JOB" "$fbank_dir/raw_fbank.JOB.ark" || {
    echo "$script: feature extraction failed for $data (logs above, in $log_dir); rerun to redo the failed jobs" >&2
    exit 1
  }
fi
"$steps/merge_fbank.py" "${opts[@]}" --max-fail-frac "$max_fail_frac" "$data" "$fbank_dir" "$nj"
