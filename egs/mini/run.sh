#!/usr/bin/env bash
# PURL on a generated synthetic corpus: every stage of egs/voxceleb/run.sh, with
# tiny models and CPU configs, in minutes. Run from this folder (or `bash run.sh`
# at the top of the project):
#   bash run.sh                              # stages 0..6
#   bash run.sh --stage 3 --stop-stage 3     # one stage
set -euo pipefail

# ---- what to run ------------------------------------------------------------
stage=0
stop_stage=1
nj=2                      # parallel jobs for features and embeddings
cmd=run_jobs.sh           # job runner: run_jobs.sh, or slurm.sh on a cluster
gpus=""                   # "" trains on CPU; "0,1" trains on those GPUs

# ---- the synthetic corpus -----------------------------------------------------
corpus=corpus             # generated here by stage 0
num_speakers=200
utts_per_speaker=12
num_test_speakers=40      # held out for the trial list
seed=0                    # corpus, split and noise seed

. ./path.sh
. utils/parse_options.sh

train=data/train
test=data/test

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: generate the synthetic corpus and prepare data dirs"; SECONDS=0
  local/make_synthetic_corpus.py --num-speakers $num_speakers --utts-per-speaker $utts_per_speaker \
    --seed $seed --nj $nj $corpus
  local/prepare_folder_corpus.py --num-test-speakers $num_test_speakers --seed $seed $corpus $train $test
  for d in $train $test; do validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur --check-audio $d; done
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: fbank features"; SECONDS=0
  for d in $train $test; do steps/make_fbank.sh --nj $nj --cmd "$cmd" $d fbank; done
  log "Stage 1 done in ${SECONDS}s"
fi
