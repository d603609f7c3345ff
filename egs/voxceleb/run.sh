#!/usr/bin/env bash
# PURL on VoxCeleb: SupCon pretraining on VoxCeleb2 dev (optionally with simulated
# label noise), GMM pair reliability, the PURL post-hoc update beside a control
# run, and scoring on VoxCeleb1-O/E/H. Run from this folder:
#   bash run.sh --stage 0 --stop-stage 1
set -euo pipefail

# ---- what to run ------------------------------------------------------------
stage=0
stop_stage=1
nj=16                     # parallel jobs for features and embeddings
cmd=run_jobs.sh           # job runner: run_jobs.sh, or slurm.sh on a cluster
gpus="0,1,2,3,4,5,6,7"    # GPUs for training (torchrun processes); "" for CPU

# ---- the corpus (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/) -------------
vox1_root=/data/voxceleb1/wav          # id10001/<video>/00001.wav ... (dev + test)
vox2_dev_root=/data/voxceleb2/dev/aac  # id00012/<video>/00001.m4a ... (or converted wav)
vox1_trials_dir=/data/voxceleb1/meta   # veri_test2.txt list_test_all2.txt list_test_hard2.txt

. ./path.sh
. utils/parse_options.sh

train=data/vox2_dev
test=data/vox1

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: data preparation"; SECONDS=0
  local/prepare_voxceleb.py --vox2-dev-root $vox2_dev_root $vox1_root $vox1_trials_dir data
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt $train
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur,trials_vox1_O $test
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: fbank features"; SECONDS=0
  for d in $train $test; do steps/make_fbank.sh --nj $nj --cmd "$cmd" $d fbank; done
  log "Stage 1 done in ${SECONDS}s"
fi
