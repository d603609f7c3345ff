#!/usr/bin/env bash
# PURL on VoxCeleb (VoxCeleb2 dev to VoxCeleb1-O/E/H) or your own corpus: SupCon pretraining, pair
# reliability, PURL beside its baselines, scoring; conf/paper (default: the original's) or conf/tuned:
#   bash run.sh --protocol tuned --noise-rate 0.2 --methods "control filter purl relabel"
#   bash run.sh --corpus /data/my_corpus --num-test-speakers 25    # or --train-dir D --test-dir D
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): see cmd.sh
stage=0
stop_stage=6
nj=16                     # parallel jobs for features and embeddings; processes of stage 4's sklearn fits
cmd=$train_cmd            # job runner for features and embeddings
gpus="0,1,2,3,4,5,6,7"    # GPUs for training (torchrun processes); "" for CPU
slurm=false               # true: training through srun, one torchrun per node (PURL_SRUN_OPTS: --nodes, --gres, ...)

# ---- the corpus: VoxCeleb (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/), or your own
vox1_root=/data/voxceleb1/wav          # id10001/<video>/00001.wav ... (dev + test), or WeSpeaker's voxceleb1/ ({dev,test}/wav)
vox2_dev_root=/data/voxceleb2/dev/aac  # id00012/<video>/00001.m4a ... (or converted wav)
vox1_trials_dir=/data/voxceleb1/meta   # veri_test2.txt; list_test_all2.txt list_test_hard2.txt where there (Vox1-E/H)
vox2_valid_pairs=local/purl_original/vox2_valid_pairs.txt  # the original's validation trials ("": none)
keep_valid_speakers=false              # true: train on their 100 speakers too (the original removes them)
corpus=""                 # instead of VoxCeleb: your own, a folder per speaker (<speaker>/**/*.wav|flac|m4a...),
num_test_speakers=25      #   this many of them held out for trials
train_dir=""              # or ready Kaldi data dirs (wav.scp, utt2spk; stage 1 adds features): train on
test_dir=""               #   train_dir, score test_dir's trials
musan_root=/data/musan                 # noise/ music/ speech/ (https://www.openslr.org/17/); with augment=true
rirs_root=/data/RIRS_NOISES            # simulated_rirs/ (https://www.openslr.org/28/); with augment=true

# ---- the experiment -----------------------------------------------------------
protocol=paper            # conf/paper/ (the original work's) or conf/tuned/ (this project's)
feature_type=""           # stage 1: kaldi (Kaldi fbank) or speechbrain (the original's front end); "": the protocol's
normalise=""              # mean normalisation of training chunks and stage 4's crops: utterance or crop (the original's); "": the protocol's
model=ecapa               # ecapa or resnet34: conf/<protocol>/<model>_supcon.yaml, <model>_purl_30ep.yaml
augment=false             # true: pretrain with conf/<protocol>/<model>_supcon_aug.yaml (MUSAN, RIRs; ecapa only)
speed_perturb=false       # true: train on the training set + 0.9/1.1 speed copies as new speakers
noise_rate=0.0            # simulated label noise (0: the labels as given, as the original)
noise_type=permute        # stage 2: permute (to any other speaker), similar (to one of its 5 nearest), merge or split
seed=0                    # noise draw and training seed
purl_start_epoch=200      # paper: the update continues models/epoch_<N>.pt of the pretraining
reliability_conf=""       # stage 4 ("": conf/<protocol>/reliability.yaml)
estimator=""              # stage 4: sklearn (the original loop), histogram (fast), bic, global ("": the conf's)
scoring=""                # stage 6: cosine, mean (training mean subtracted), asnorm (mean, AS-Norm) ("": the protocol's)
filter_keep_ratio=0.5     # stage 5 filtering baseline: fraction of each speaker's utterances kept
methods="control filter purl"  # stage 5 (local/methods.sh; docs/noisy_label_benchmark.md): + relabel, relabel_unlearn, ...
relabel_opts=""           # stage 5 relabel methods: options of steps/relabel_data_dir.py, e.g. "--margin 0.2"
relabel_rounds=2          # stage 5 relabel: 2 proposes again with the model trained on round 1's labels (1: once)
retrain_min_changed=0.01  # stage 5 relabel_retrain: pretrain again when relabelling changed this share of labels (less: the update)
reestimate_every=2        # stage 5 reestimate: epochs between re-fits of the pair weights
orgate_top_k=3            # stage 5 orgate: an utterance trains once its label is among its k nearest speaker centroids
cohort_utts_per_speaker=20  # AS-Norm cohort: speaker means over this many utterances each
train_overrides=""        # config overrides for every training run, e.g. "data.num_workers=8"
score_epochs=""           # stage 6: also score each epoch A:B of the updates (paper: 201:230, the original's 200-229)

. ./path.sh
. utils/parse_options.sh
. utils/recipe_setup.sh   # conf/$protocol/stages.conf; checks
. local/methods.sh        # stage 5's methods (checked now)
. local/setup_run.sh data/vox2_dev data/vox1 trials_vox1_O --require-dir "$vox1_root" \
  --require-dir "$vox2_dev_root" --trials "$vox1_trials_dir/veri_test2.txt"  # names, preflight

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: data preparation"; SECONDS=0
  if [ -n "$corpus" ]; then
    local/prepare_folder_corpus.py --num-test-speakers $num_test_speakers $corpus $source_dir $prep_test
  elif [ -z "$train_dir" ]; then
    prepare_opts=(--vox2-dev-root $vox2_dev_root)
    [ -z "$vox2_valid_pairs" ] || prepare_opts+=(--vox2-valid-pairs $vox2_valid_pairs)
    [ "$keep_valid_speakers" != true ] || prepare_opts+=(--keep-valid-speakers)
    local/prepare_voxceleb.py "${prepare_opts[@]}" $vox1_root $vox1_trials_dir data
  fi
  [ "$speed_perturb" = false ] || steps/perturb_speed.py --factors 0.9,1.1 $source_dir $prep_train
  if [ "$augment" = true ]; then
    local/prepare_musan.py $musan_root data
    local/prepare_rirs.py $rirs_root data/rirs
  fi
  audio=(wav.scp, wav.scp,utt2dur,); [ -z "$train_dir" ] || audio=("" "")  # ready dirs may hold features only
  validate_data_dir.py --require ${audio[0]}utt2spk,spk2utt $prep_train
  validate_data_dir.py --require ${audio[1]}utt2spk,spk2utt,$trial_list $prep_test
  [ -z "$prep_valid" ] || validate_data_dir.py --require wav.scp,utt2spk,spk2utt,trials $prep_valid
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: $feature_type fbank features"; SECONDS=0
  steps/preflight.py --data-dir $prep_train --data-dir $prep_test --fbank-dir fbank  # audio readers, disk space
  for d in $prep_train $prep_test $prep_valid; do  # other features than Kaldi's: in a copy of the dir
    [ -z "$feats_tag" ] || copy_data_dir.py $d $(feats_dir $d)
    steps/make_fbank.sh --feature-type $feature_type --nj $nj --cmd "$cmd" $(feats_dir $d) $(feats_dir $d)/log fbank
  done
  log "Stage 1 done in ${SECONDS}s"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ "$noise_rate" != 0 ]; then
  log "Stage 2: simulate noisy correspondence ($noise_type, rate $noise_rate)"; SECONDS=0
  steps/simulate_noise.py --noise-type $noise_type --seed $seed $noise_rate $train $noisy
  log "Stage 2 done in ${SECONDS}s"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: SupCon pretraining of $model on $noisy"; SECONDS=0
  steps/train.sh --gpus "$gpus" --slurm $slurm "${valid_opt[@]}" --overrides "$overrides" $supcon_conf $noisy $pretrain
  log "Stage 3 done in ${SECONDS}s"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: GMM pair reliability"; SECONDS=0
  # shellcheck disable=SC2086
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $reliability_embed_opts \
    $pretrain/models/$reliability_from $noisy $pretrain/embeddings/$reliability_emb
  steps/reliability.py "${reliability_opts[@]}" --clean-dir ${noisy}_cleaned $emb $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: from the pretrained model: $methods"; SECONDS=0
  train_methods              # local/methods.sh
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  trials=$(echo $test/trials*)  # Vox1-E and -H only where stage 0 had their lists
  log "Stage 6: embeddings and scoring on $trials"; SECONDS=0
  [ "$scoring" = cosine ] || [ -f $cohort/utt2spk ] ||
    subset_data_dir.py --per-speaker $cohort_utts_per_speaker $noisy $cohort
  for m in $models; do
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $test $m/embeddings/$(basename $test)
    norm=()  # cosine: plain, as the original; mean: minus the training mean; asnorm: and AS-Norm
    if [ "$scoring" != cosine ]; then
      steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $cohort $m/embeddings/cohort
      norm=(--mean $m/embeddings/cohort/mean.vec)
    fi
    [ "$scoring" != asnorm ] || norm+=(--cohort $m/embeddings/cohort/xvector.scp --cohort-utt2spk $cohort/utt2spk --top-k 300)
    steps/score.py "${norm[@]}" --results exp/RESULTS.md $m/embeddings/$(basename $test)/xvector.scp $m/scores $trials
    # calibration to LLRs: on the original's validation speakers (held out of training) where stage 0
    # made them, else on trials drawn from training speakers of the cohort dir with the labels before
    # simulated noise (noisy ones make the LLRs underconfident); never on the test set
    if [ -n "$valid" ]; then
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
    for m in $updates; do
      steps/score_epochs.sh --epochs $score_epochs --nj $nj --cmd "$cmd" --gpus "$gpus" $m $test $trials
    done
  fi
  log "Stage 6 done in ${SECONDS}s"
fi
