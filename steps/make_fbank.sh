#!/usr/bin/env bash
# Stage 1: 80-dim Kaldi fbank features for a data dir, in nj parallel jobs.
# Writes compressed arks under <fbank-dir>, and <data-dir>/{feats.scp,utt2num_frames}
# (plus utt2dur where the dir had none). A rerun skips a dir whose features are
# complete and redoes only the jobs that did not finish. Utterances that cannot be
# read are listed in <data-dir>/log/fbank_failed; up to --max-fail-frac of them are
# dropped from the dir (old files in .backup/), more fail the stage.
set -euo pipefail

nj=4                   # parallel jobs
cmd=run_jobs.sh        # job runner: run_jobs.sh (local) or slurm.sh
sample_rate=16000
num_mel_bins=80
compress=true
max_fail_frac=0.01     # fraction of utterances that may fail before the stage does
help_message="Usage: $0 [options] <data-dir> <fbank-dir>
 e.g.: $0 --nj 8 data/vox2_dev fbank
Options:
  --nj N               parallel jobs ($nj)
  --cmd CMD            job runner ($cmd)
  --sample-rate HZ     expected sample rate ($sample_rate)
  --num-mel-bins N     ($num_mel_bins)
  --compress BOOL      Kaldi-compress the arks ($compress)
  --max-fail-frac F    ($max_fail_frac)"

. parse_options.sh
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
data=$1
name=$(basename "$data")
fbank_dir=$(mkdir -p "$2/$name" && cd "$2/$name" && pwd)
log_dir=$data/log
script=$(basename "$0")

if [ -f "$data/feats.scp" ] && [ "$data/feats.scp" -nt "$data/wav.scp" ]; then
  echo "$script: $data/feats.scp is complete; skipping (delete it to redo)"
  exit 0
fi
validate_data_dir.py --require wav.scp,utt2spk "$data" > /dev/null
num_utts=$(wc -l < "$data/wav.scp")
[ "$nj" -le "$num_utts" ] || nj=$num_utts
mkdir -p "$log_dir"
split_data_dir.py "$data" "$nj" > /dev/null

# Jobs whose scp exists finished earlier (the scp is renamed into place last).
todo=()
for n in $(seq "$nj"); do
  if [ ! -f "$fbank_dir/raw_fbank.$n.scp" ] || [ "$data/split$nj/$n/wav.scp" -nt "$fbank_dir/raw_fbank.$n.scp" ]; then
    todo+=("$n")
  fi
done
echo "$script: $data: $num_utts utterances in $nj jobs (${#todo[@]} to run); logs in $log_dir/make_fbank.*.log"
if [ ${#todo[@]} -gt 0 ]; then
  job_list=$(IFS=,; echo "${todo[*]}")
  OMP_NUM_THREADS=1 $cmd "JOB=$job_list" "$log_dir/make_fbank.JOB.log" \
    "$(dirname "$0")/compute_fbank.py" --sample-rate "$sample_rate" \
      --num-mel-bins "$num_mel_bins" --compress "$compress" \
      "$data/split$nj/JOB" "$fbank_dir/raw_fbank.JOB.ark" || {
    echo "$script: feature extraction failed for $data (logs above); rerun to redo the failed jobs" >&2
    exit 1
  }
fi
"$(dirname "$0")/merge_fbank.py" --max-fail-frac "$max_fail_frac" "$data" "$fbank_dir" "$nj"
