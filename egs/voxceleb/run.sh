#!/usr/bin/env bash
# PURL on VoxCeleb: SupCon pretraining on VoxCeleb2 dev (optionally with simulated
# label noise), GMM pair reliability, the PURL post-hoc update beside a control
# run, and scoring on VoxCeleb1-O/E/H. Run from this folder:
#   bash run.sh --stage 0 --stop-stage 1
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): ours, or Kaldi's run.pl/queue.pl/slurm.pl

# ---- what to run ------------------------------------------------------------
stage=0
stop_stage=6
nj=16                     # parallel jobs for features and embeddings
cmd=$train_cmd            # job runner for features and embeddings: see cmd.sh
gpus="0,1,2,3,4,5,6,7"    # GPUs for training (torchrun processes); "" for CPU
slurm=false               # true: training through srun, one torchrun per node (PURL_SRUN_OPTS: --nodes, --gres, ...)

# ---- the corpus (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/) -------------
vox1_root=/data/voxceleb1/wav          # id10001/<video>/00001.wav ... (dev + test)
vox2_dev_root=/data/voxceleb2/dev/aac  # id00012/<video>/00001.m4a ... (or converted wav)
vox1_trials_dir=/data/voxceleb1/meta   # veri_test2.txt list_test_all2.txt list_test_hard2.txt

# ---- the experiment -----------------------------------------------------------
model=ecapa                        # ecapa or resnet34: conf/<model>_supcon.yaml, conf/<model>_purl_30ep.yaml
noise_rate=0.2                     # simulated label noise (0: train on the labels as they are)
seed=0                             # noise draw and training seed
estimator=histogram                # stage 4: histogram (fast), sklearn (the original loop), bic, global
cohort_utts_per_speaker=20         # AS-Norm cohort: speaker means over this many utterances each
train_overrides=""                 # config overrides for every training run, e.g. "data.num_workers=8"

. ./path.sh
. utils/parse_options.sh
# One spelling per rate: 0.0 and 0 (0.20 and 0.2) name the same dirs and skip the same stages.
noise_rate=$(awk -v r="$noise_rate" 'BEGIN { if (r < 0 || r >= 1) exit 1; print r + 0 }') || {
  echo "$0: --noise-rate must be in [0, 1) (0: the labels as given)" >&2; exit 1; }

train=data/vox2_dev
test=data/vox1
noisy=data/vox2_dev_noisy${noise_rate}_seed$seed
[ "$noise_rate" != 0 ] || noisy=$train
overrides="train.seed=$seed $train_overrides"
pretrain=exp/${model}_supcon_noisy${noise_rate}_seed$seed
purl=exp/${model}_purl_noisy${noise_rate}_seed$seed
control=exp/${model}_control_noisy${noise_rate}_seed$seed
models="$pretrain $control $purl"  # scored in stage 6

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: data preparation"; SECONDS=0
  local/prepare_voxceleb.py --vox2-dev-root $vox2_dev_root $vox1_root $vox1_trials_dir data
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt $train
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur,trials_vox1_O $test
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: fbank features"; SECONDS=0
  for d in $train $test; do steps/make_fbank.sh --nj $nj --cmd "$cmd" $d $d/log fbank; done
  log "Stage 1 done in ${SECONDS}s"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ "$noise_rate" != 0 ]; then
  log "Stage 2: simulate noisy correspondence (rate $noise_rate)"; SECONDS=0
  steps/simulate_noise.py --seed $seed $noise_rate $train $noisy
  log "Stage 2 done in ${SECONDS}s"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: SupCon pretraining of $model on $noisy"; SECONDS=0
  steps/train.sh --gpus "$gpus" --slurm $slurm --overrides "$overrides" conf/${model}_supcon.yaml $noisy $pretrain
  log "Stage 3 done in ${SECONDS}s"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: GMM pair reliability"; SECONDS=0
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $pretrain/models/final.pt $noisy $pretrain/embeddings/train
  steps/reliability.py --estimator $estimator --compare global,bic --clean-dir ${noisy}_cleaned \
    $pretrain/embeddings/train/xvector.scp $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: PURL update and its control run"; SECONDS=0
  init="purl.init_checkpoint=$pretrain/models/final.pt"
  steps/train.sh --gpus "$gpus" --slurm $slurm --overrides "$overrides $init purl.reliability=$pretrain/reliability" \
    conf/${model}_purl_30ep.yaml $noisy $purl
  steps/train.sh --gpus "$gpus" --slurm $slurm --overrides "$overrides $init loss.type=supcon" conf/${model}_purl_30ep.yaml $noisy $control
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: embeddings and scoring on VoxCeleb1-O/E/H"; SECONDS=0
  cohort=${noisy}_cohort$cohort_utts_per_speaker
  [ -f $cohort/utt2spk ] || subset_data_dir.py --per-speaker $cohort_utts_per_speaker $noisy $cohort
  for m in $models; do
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $test $m/embeddings/vox1
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $cohort $m/embeddings/cohort
    steps/score.py --mean $m/embeddings/cohort/mean.vec --cohort $m/embeddings/cohort/xvector.scp \
      --cohort-utt2spk $cohort/utt2spk --top-k 300 --results RESULTS.md \
      $m/embeddings/vox1/xvector.scp $m/scores $test/trials_vox1_O $test/trials_vox1_E $test/trials_vox1_H
  done
  log "Stage 6 done in ${SECONDS}s"
fi
