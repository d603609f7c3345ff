#!/usr/bin/env bash
# PURL on CN-Celeb: SupCon pretraining on CN-Celeb1 dev + CN-Celeb2 (optionally
# with simulated label noise), GMM pair reliability, the PURL post-hoc update
# beside a control run, and scoring on CN-Celeb1 eval: the released
# concatenated enrollment files (trials_concat, the original work's protocol)
# and enrollment models averaged over their utterances (avg_enroll_trials).
# The models and configs are egs/voxceleb's. Run from this folder:
#   bash run.sh --stage 0 --stop-stage 1
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): ours, or Kaldi's run.pl/queue.pl/slurm.pl

# ---- what to run ------------------------------------------------------------
stage=0
stop_stage=6
nj=16                     # parallel jobs for features and embeddings; processes of stage 4's sklearn fits
cmd=$train_cmd            # job runner for features and embeddings: see cmd.sh
gpus="0,1,2,3,4,5,6,7"    # GPUs for training (torchrun processes); "" for CPU

# ---- the corpus (https://www.openslr.org/82/, v2 releases, flac) ---------------
cn1_root=/data/CN-Celeb_flac    # data/ dev/dev.lst eval/{enroll,test,lists}
cn2_root=/data/CN-Celeb2_flac   # data/ spk.lst; "" trains on CN-Celeb1 dev only

# ---- the experiment -----------------------------------------------------------
model=ecapa                        # ecapa or resnet34: conf/<model>_supcon.yaml, conf/<model>_purl_30ep.yaml
noise_rate=0.2                     # simulated label noise (0: train on the labels as they are)
seed=0                             # noise draw and training seed
purl_start_epoch=200               # the update continues models/epoch_<N>.pt of the pretraining (the original protocol)
reliability_conf=conf/reliability_paper.yaml  # stage 4: the original fit (sklearn at tol 1e-3)
estimator=""                       # stage 4: sklearn, histogram (fast), bic, global ("": the conf's)
filter_keep_ratio=0.5              # stage 5 filtering baseline: fraction of each speaker's utterances kept
cohort_utts_per_speaker=20         # AS-Norm cohort: speaker means over this many utterances each
train_overrides=""                 # config overrides for every training run, e.g. "data.num_workers=8"

. ./path.sh
. utils/parse_options.sh

train=data/cnceleb_train
test=data/cnceleb1_eval
noisy=${train}_noisy${noise_rate}_seed$seed
[ "$noise_rate" != 0 ] || noisy=$train
overrides="train.seed=$seed $train_overrides"
pretrain=exp/${model}_supcon_noisy${noise_rate}_seed$seed
purl=exp/${model}_purl_noisy${noise_rate}_seed$seed
control=exp/${model}_control_noisy${noise_rate}_seed$seed
filtered=${noisy}_filtered$filter_keep_ratio   # the filtering baseline's training dir
filter=exp/${model}_filter${filter_keep_ratio}_noisy${noise_rate}_seed$seed
models="$pretrain $control $filter $purl"  # scored in stage 6

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: data preparation"; SECONDS=0
  local/prepare_cnceleb.py ${cn2_root:+--cn2-root $cn2_root} $cn1_root data
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur $train
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur,trials_concat $test
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
  steps/train.sh --gpus "$gpus" --overrides "$overrides" conf/${model}_supcon.yaml $noisy $pretrain
  log "Stage 3 done in ${SECONDS}s"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: GMM pair reliability"; SECONDS=0
  # as the original: one random 3 s crop per utterance of the checkpoint the update continues
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" --num-crops 1 --crop-frames 300 --random-crop-seed $seed \
    $pretrain/models/epoch_$purl_start_epoch.pt $noisy $pretrain/embeddings/train_crop
  reliability_opts=(--config $reliability_conf --nj $nj); [ -z "$estimator" ] || reliability_opts+=(--estimator $estimator)
  steps/reliability.py "${reliability_opts[@]}" \
    $pretrain/embeddings/train_crop/xvector.scp $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: PURL update, its control run and the filtering baseline"; SECONDS=0
  init="purl.init_checkpoint=$pretrain/models/epoch_$purl_start_epoch.pt"  # its whole state (purl.init_mode continue)
  steps/train.sh --gpus "$gpus" --overrides "$overrides $init purl.reliability=$pretrain/reliability" \
    conf/${model}_purl_30ep.yaml $noisy $purl
  steps/train.sh --gpus "$gpus" --overrides "$overrides $init loss.type=supcon" conf/${model}_purl_30ep.yaml $noisy $control
  steps/filter_data_dir.py --keep-ratio $filter_keep_ratio $pretrain/embeddings/train_crop/xvector.scp $noisy $filtered
  steps/train.sh --gpus "$gpus" --overrides "$overrides $init loss.type=supcon" conf/${model}_purl_30ep.yaml $filtered $filter
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: embeddings and scoring on CN-Celeb1 eval"; SECONDS=0
  cohort=${noisy}_cohort$cohort_utts_per_speaker
  [ -f $cohort/utt2spk ] || subset_data_dir.py --per-speaker $cohort_utts_per_speaker $noisy $cohort
  for m in $models; do
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $test $m/embeddings/eval
    steps/average_embeddings.py $m/embeddings/eval/xvector.scp $test/enroll_avg $m/embeddings/eval_avg
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $cohort $m/embeddings/cohort
    steps/score.py --mean $m/embeddings/cohort/mean.vec --cohort $m/embeddings/cohort/xvector.scp \
      --cohort-utt2spk $cohort/utt2spk --top-k 300 --results exp/RESULTS.md \
      $m/embeddings/eval_avg/xvector.scp $m/scores $test/trials_concat $test/avg_enroll_trials
    # calibration to LLRs on trials drawn from training speakers of the cohort dir, with the labels before
    # simulated noise (noisy ones make the LLRs underconfident); never on the eval lists
    steps/calibrate.py --results exp/RESULTS.md $m/embeddings/cohort/xvector.scp $train $m/scores
  done
  log "Stage 6 done in ${SECONDS}s"
fi
