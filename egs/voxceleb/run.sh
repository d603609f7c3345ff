#!/usr/bin/env bash
# PURL on VoxCeleb: SupCon pretraining on VoxCeleb2 dev (optionally with simulated
# label noise), GMM pair reliability, the PURL post-hoc update beside a control
# run, and scoring on VoxCeleb1-O/E/H. By default the original work's protocol
# (README: Fidelity); --protocol tuned gives this project's variants. Run from
# this folder:
#   bash run.sh --stage 0 --stop-stage 1
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): ours, or Kaldi's run.pl/queue.pl/slurm.pl

# ---- what to run ------------------------------------------------------------
stage=0
stop_stage=6
nj=16                     # parallel jobs for features and embeddings; processes of stage 4's sklearn fits
cmd=$train_cmd            # job runner for features and embeddings: see cmd.sh
gpus="0,1,2,3,4,5,6,7"    # GPUs for training (torchrun processes); "" for CPU
slurm=false               # true: training through srun, one torchrun per node (PURL_SRUN_OPTS: --nodes, --gres, ...)

# ---- the corpus (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/) -------------
vox1_root=/data/voxceleb1/wav          # id10001/<video>/00001.wav ... (dev + test), or WeSpeaker's voxceleb1/ ({dev,test}/wav)
vox2_dev_root=/data/voxceleb2/dev/aac  # id00012/<video>/00001.m4a ... (or converted wav)
vox1_trials_dir=/data/voxceleb1/meta   # veri_test2.txt; list_test_all2.txt list_test_hard2.txt where there (Vox1-E/H)
vox2_valid_pairs=local/purl_original/vox2_valid_pairs.txt  # the original's validation trials ("": none)
keep_valid_speakers=false              # true: train on their 100 speakers too (the original removes them)
musan_root=/data/musan                 # noise/ music/ speech/ (https://www.openslr.org/17/); with augment=true
rirs_root=/data/RIRS_NOISES            # simulated_rirs/ (https://www.openslr.org/28/); with augment=true

# ---- the experiment -----------------------------------------------------------
model=ecapa                        # ecapa or resnet34: conf/<model>_supcon.yaml, conf/<model>_purl_30ep.yaml
# paper: the original work's protocol; tuned: this project's variants (bf16 and
# clipping, averaged checkpoints, a fresh optimizer for the update, unreliable
# pairs kept as negatives, whole-utterance histogram-EM reliability, AS-Norm)
protocol=paper
augment=false                      # true: pretrain with conf/<model>_supcon_aug.yaml (MUSAN noise, RIRs; ecapa only)
speed_perturb=false                # true: train on vox2_dev + 0.9/1.1 speed copies as new speakers
noise_rate=0                       # simulated label noise (0: VoxCeleb2's labels as given, as the original)
seed=0                             # noise draw and training seed
purl_start_epoch=200               # the update continues models/epoch_<N>.pt of the pretraining
reliability_conf=""                # stage 4: "": conf/reliability_paper.yaml (paper) or conf/reliability.yaml (tuned)
estimator=""                       # stage 4: sklearn (the original loop), histogram (fast), bic, global ("": the conf's)
                                   # ("": sklearn with tol 1e-3 for paper, histogram for tuned)
scoring=""                         # cosine (plain), mean (training mean subtracted), asnorm (mean + AS-Norm)
                                   # ("": cosine for paper, asnorm for tuned)
filter_keep_ratio=0.5              # stage 5 filtering baseline: fraction of each speaker's utterances kept
cohort_utts_per_speaker=20         # AS-Norm cohort: speaker means over this many utterances each
train_overrides=""                 # config overrides for every training run, e.g. "data.num_workers=8"
score_epochs=""                    # stage 6: also score every epoch A:B of the updates (paper: 201:230, the
                                   # original's epochs 200-229; tuned: 1:30); stage 5 then keeps those checkpoints

. ./path.sh
. utils/parse_options.sh
case $keep_valid_speakers in true|false) ;;
  *) echo "$0: --keep-valid-speakers must be true or false, got '$keep_valid_speakers'" >&2; exit 1 ;;
esac

case $protocol in
  paper) tag=""; reliability_conf=${reliability_conf:-conf/reliability_paper.yaml}; scoring=${scoring:-cosine}
         pretrain_overrides=""; purl_overrides=""
         start=$purl_start_epoch  # stage 4 embeds, and stage 5 continues, the pretraining's epoch_<N>.pt
         reliability_ckpt=models/epoch_$start.pt; purl_init=models/epoch_$start.pt
         embed_opts="--num-crops 1 --crop-frames 300 --random-crop-seed $seed"
         reliability_emb=train_crop ;;
  tuned) tag=_tuned; reliability_conf=${reliability_conf:-conf/reliability.yaml}; scoring=${scoring:-asnorm}
         pretrain_overrides="train.amp=true optim.grad_clip=5 train.average_last=5"
         purl_overrides="$pretrain_overrides purl.init_mode=weights optim.epochs=30 loss.keep_unreliable_negatives=true"
         reliability_ckpt=models/final.pt; purl_init=models/final.pt
         embed_opts=""; reliability_emb=train ;;
  *) echo "$0: --protocol $protocol: use paper or tuned" >&2; exit 1 ;;
esac
case $scoring in cosine|mean|asnorm) ;; *) echo "$0: --scoring $scoring: use cosine, mean or asnorm" >&2; exit 1 ;; esac
if [ -n "$score_epochs" ]; then  # the updates keep the checkpoints stage 6 scores
  [[ $score_epochs =~ ^([0-9]+):([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ] || {
    echo "$0: --score-epochs '$score_epochs': give A:B with A <= B, e.g. 201:230" >&2; exit 1; }
  purl_overrides="$purl_overrides train.keep_epochs=[$(seq -s, "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")]"
fi

# One spelling per rate: 0.0 and 0 (0.20 and 0.2) name the same dirs and skip the same stages.
noise_rate=$(awk -v r="$noise_rate" 'BEGIN { if (r < 0 || r >= 1) exit 1; print r + 0 }') || {
  echo "$0: --noise-rate must be in [0, 1) (0: the labels as given)" >&2; exit 1; }

train=data/vox2_dev
[ "$speed_perturb" = false ] || train=data/vox2_dev_sp
supcon_conf=conf/${model}_supcon.yaml
[ "$augment" = false ] || supcon_conf=conf/${model}_supcon_aug.yaml
name=$model                                  # experiment names say how the model was trained
[ "$augment" = false ] || name=${name}_aug
[ "$speed_perturb" = false ] || name=${name}_sp
test=data/vox1
valid=data/vox2_valid              # held-out figures each training epoch, when vox2_valid_pairs is set
valid_opt=""
[ -z "$vox2_valid_pairs" ] || valid_opt="--valid-data $valid"
noisy=${train}_noisy${noise_rate}_seed$seed
[ "$noise_rate" != 0 ] || noisy=$train
overrides="train.seed=$seed $train_overrides"
pretrain=exp/${name}_supcon${tag}_noisy${noise_rate}_seed$seed
purl=exp/${name}_purl${tag}_noisy${noise_rate}_seed$seed
control=exp/${name}_control${tag}_noisy${noise_rate}_seed$seed
filtered=${noisy}_filtered$filter_keep_ratio   # the filtering baseline's training dir
filter=exp/${name}_filter${filter_keep_ratio}${tag}_noisy${noise_rate}_seed$seed
models="$pretrain $control $filter $purl"  # scored in stage 6

log "Preflight: configs, processes, devices, inputs"
preflight_gpus=""; [ $stop_stage -lt 3 ] || preflight_gpus=$gpus  # stages 3-6 use the GPUs
preflight=(--gpus "$preflight_gpus" --config "$supcon_conf" --config "conf/${model}_purl_30ep.yaml"
           --overrides "$overrides $pretrain_overrides $purl_overrides")
if [ $stage -le 0 ]; then
  preflight+=(--require-dir "$vox1_root" --require-dir "$vox2_dev_root")
  preflight+=(--trials "$vox1_trials_dir/veri_test2.txt")  # Vox1-E and -H lists are optional
elif [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  preflight+=(--trials "$test/trials_vox1_O")
fi
steps/preflight.py "${preflight[@]}"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: data preparation"; SECONDS=0
  prepare_opts="--vox2-dev-root $vox2_dev_root"
  [ -z "$vox2_valid_pairs" ] || prepare_opts="$prepare_opts --vox2-valid-pairs $vox2_valid_pairs"
  [ "$keep_valid_speakers" != true ] || prepare_opts="$prepare_opts --keep-valid-speakers"
  local/prepare_voxceleb.py $prepare_opts $vox1_root $vox1_trials_dir data
  [ "$speed_perturb" = false ] || steps/perturb_speed.py --factors 0.9,1.1 data/vox2_dev $train
  if [ "$augment" = true ]; then
    local/prepare_musan.py $musan_root data
    local/prepare_rirs.py $rirs_root data/rirs
  fi
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt $train
  validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur,trials_vox1_O $test
  [ -z "$vox2_valid_pairs" ] || validate_data_dir.py --require wav.scp,utt2spk,spk2utt,trials $valid
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: fbank features"; SECONDS=0
  steps/preflight.py --data-dir $train --data-dir $test --fbank-dir fbank  # audio readers, disk space
  for d in $train $test ${vox2_valid_pairs:+$valid}; do steps/make_fbank.sh --nj $nj --cmd "$cmd" $d $d/log fbank; done
  log "Stage 1 done in ${SECONDS}s"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ "$noise_rate" != 0 ]; then
  log "Stage 2: simulate noisy correspondence (rate $noise_rate)"; SECONDS=0
  steps/simulate_noise.py --seed $seed $noise_rate $train $noisy
  log "Stage 2 done in ${SECONDS}s"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: SupCon pretraining of $model on $noisy"; SECONDS=0
  steps/train.sh --gpus "$gpus" --slurm $slurm $valid_opt --overrides "$overrides $pretrain_overrides" $supcon_conf $noisy $pretrain
  log "Stage 3 done in ${SECONDS}s"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: GMM pair reliability"; SECONDS=0
  # shellcheck disable=SC2086
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $embed_opts \
    $pretrain/$reliability_ckpt $noisy $pretrain/embeddings/$reliability_emb
  # shellcheck disable=SC2086
  reliability_opts=(--config $reliability_conf --nj $nj); [ -z "$estimator" ] || reliability_opts+=(--estimator $estimator)
  steps/reliability.py "${reliability_opts[@]}" --clean-dir ${noisy}_cleaned \
    $pretrain/embeddings/$reliability_emb/xvector.scp $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: PURL update, its control run and the filtering baseline"; SECONDS=0
  init="purl.init_checkpoint=$pretrain/$purl_init"
  steps/train.sh --gpus "$gpus" --slurm $slurm $valid_opt --overrides "$overrides $purl_overrides $init purl.reliability=$pretrain/reliability" \
    conf/${model}_purl_30ep.yaml $noisy $purl
  steps/train.sh --gpus "$gpus" --slurm $slurm $valid_opt --overrides "$overrides $purl_overrides $init loss.type=supcon" \
    conf/${model}_purl_30ep.yaml $noisy $control
  steps/filter_data_dir.py --keep-ratio $filter_keep_ratio $pretrain/embeddings/$reliability_emb/xvector.scp $noisy $filtered
  steps/train.sh --gpus "$gpus" --slurm $slurm $valid_opt --overrides "$overrides $purl_overrides $init loss.type=supcon" \
    conf/${model}_purl_30ep.yaml $filtered $filter
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  trials=$(echo $test/trials_vox1_[OEH])  # Vox1-E and -H only where stage 0 had their lists
  log "Stage 6: embeddings and scoring on $trials"; SECONDS=0
  cohort=${noisy}_cohort$cohort_utts_per_speaker
  if [ "$scoring" != cosine ]; then
    [ -f $cohort/utt2spk ] || subset_data_dir.py --per-speaker $cohort_utts_per_speaker $noisy $cohort
  fi
  for m in $models; do
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $test $m/embeddings/vox1
    norm=()  # cosine: plain, as the original; mean: minus the training mean; asnorm: and AS-Norm
    if [ "$scoring" != cosine ]; then
      steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $cohort $m/embeddings/cohort
      norm=(--mean $m/embeddings/cohort/mean.vec)
    fi
    [ "$scoring" != asnorm ] || norm+=(--cohort $m/embeddings/cohort/xvector.scp --cohort-utt2spk $cohort/utt2spk --top-k 300)
    steps/score.py "${norm[@]}" --results exp/RESULTS.md \
      $m/embeddings/vox1/xvector.scp $m/scores $trials
    # calibration to LLRs: on the original's validation speakers (held out of training) where stage 0
    # made them, else on trials drawn from training speakers of the cohort dir with the labels before
    # simulated noise (noisy ones make the LLRs underconfident); never on Vox1
    if [ -n "$vox2_valid_pairs" ]; then
      steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $valid $m/embeddings/vox2_valid
      steps/calibrate.py --dev-trials $valid/trials --results exp/RESULTS.md \
        $m/embeddings/vox2_valid/xvector.scp $valid $m/scores
    else
      [ -f $cohort/utt2spk ] || subset_data_dir.py --per-speaker $cohort_utts_per_speaker $noisy $cohort
      steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $cohort $m/embeddings/cohort
      steps/calibrate.py --results exp/RESULTS.md $m/embeddings/cohort/xvector.scp $train $m/scores
    fi
  done
  if [ -n "$score_epochs" ]; then  # every epoch of the updates, plain cosine: <exp>/scores_epochs/results.md, eer.png
    for m in $purl $control $filter; do
      steps/score_epochs.sh --epochs $score_epochs --nj $nj --cmd "$cmd" --gpus "$gpus" $m $test $trials
    done
  fi
  log "Stage 6 done in ${SECONDS}s"
fi
