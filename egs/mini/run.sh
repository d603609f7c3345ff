#!/usr/bin/env bash
# PURL on a generated synthetic corpus, or on a corpus of your own: every stage of
# egs/voxceleb/run.sh with tiny models and CPU configs, in minutes. Run from this
# folder (or `bash run.sh` at the top of the project):
#   bash run.sh                                      # stages 0..6
#   bash run.sh --protocol paper                     # the original work's protocol
#   bash run.sh --synthetic false --corpus /data/my_corpus   # <speaker>/**/*.wav ...
#   bash run.sh --train-dir data/my_train --test-dir data/my_test   # ready Kaldi data dirs
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): see cmd.sh
stage=0
stop_stage=6
nj=2                      # parallel jobs for features and embeddings
cmd=$train_cmd            # job runner for features and embeddings
gpus=""                   # "" trains on CPU; "0,1" trains on those GPUs

# ---- the corpus: generated, a folder per speaker, or ready data dirs --------
synthetic=true            # generate the synthetic corpus; false: your own in corpus
corpus=corpus             # its root (<speaker>/**/*.wav|flac|opus|m4a...), generated here when synthetic
train_dir=""              # instead: a ready Kaldi data dir to train on (wav.scp, utt2spk; stage 1 adds feats)
test_dir=""               #   and one to test on, with trials (utt1 utt2 target|nontarget)
num_speakers=200          # of the synthetic corpus
utts_per_speaker=12
num_test_speakers=40      # held out for the trial list
num_outsider_speakers=0   # held out as the outsiders of open-set noise: never trained on or tested
corpus_seed=0             # the synthetic corpus and the train/test split

# ---- the experiment -----------------------------------------------------------
protocol=tuned            # conf/tuned/ (this project's settings, tracked here on CPU) or conf/paper/ (the original's)
feature_type=""           # stage 1: kaldi (Kaldi fbank) or speechbrain (the original's front end); "": the protocol's
normalise=""              # mean normalisation of training chunks and stage 4's crops: utterance or crop (the original's); "": the protocol's
seed=0                    # label noise and training; run 3 to see the spread
noise_rate=0.2            # fraction of training utterances filed under a wrong speaker
noise_type=permute        # stage 2: permute (to any other speaker), similar (to one of the nearest_k
                          #   nearest), open (outsiders' utterances; needs num_outsider_speakers), merge or split
nearest_k=5               # similar: destinations per speaker
supcon_conf=""            # stage 3 ("": conf/<protocol>/supcon.yaml)
purl_conf=""              # stage 5 update and control run ("": conf/<protocol>/purl.yaml)
reliability_conf=""       # stage 4 ("": conf/<protocol>/reliability.yaml)
estimator=""              # stage 4: histogram, sklearn, bic or global ("": the conf's)
scoring=""                # stage 6 ("": the protocol's): cosine, or mean|asnorm (training mean subtracted); AS-Norm beside any
clean_reference=true      # also pretrain on the clean labels, to show what noise costs
calibration_dir=""        # stage 6: calibrate on speakers no model trains on (data/outsiders, say); "": training's
methods="control filter purl relabel relabel_retrain"  # stage 5 (local/methods.sh): or relabel_purl relabel_unlearn reestimate regroup regroup_relabel orgate
filter_keep_ratio=0.5     # stage 5 filter: fraction of each speaker's utterances kept
relabel_opts=""           # stage 5 relabel: options of steps/relabel_data_dir.py, e.g. "--margin 0.2"
relabel_rounds=2          # stage 5 relabel: 2 proposes again with the model trained on round 1's labels (1: once)
retrain_min_changed=0.01  # stage 5 relabel_retrain: pretrain again when relabelling changed this share of labels (less: the update)
reestimate_every=2        # stage 5 reestimate: epochs between re-fits of the pair weights
orgate_top_k=3            # stage 5 orgate: an utterance trains once its label is among its k nearest speaker centroids
train_overrides=""        # config overrides for every training run, e.g. "optim.epochs=1"
purl_overrides=""         # ... then these for the update and the control run, e.g. "optim.epochs=2"

. ./path.sh
. utils/parse_options.sh
. utils/recipe_setup.sh   # conf/$protocol/stages.conf; checks
. local/names.sh          # data dirs and exp dirs: exp/<model>_<protocol><feats_tag>_<noise><rate>_seed<seed>
. local/methods.sh        # stage 5's methods

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: corpus and data dirs"; SECONDS=0
  if [ -z "$train_dir" ]; then
    [ "$synthetic" = false ] || local/make_synthetic_corpus.py --num-speakers $num_speakers \
      --utts-per-speaker $utts_per_speaker --seed $corpus_seed --nj $nj $corpus
    local/prepare_folder_corpus.py --num-test-speakers $num_test_speakers --seed $corpus_seed \
      --num-outsider-speakers $num_outsider_speakers --outsider-dir $prep_outsiders $corpus $prep_train $prep_test
    for d in $prep_dirs; do validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur --check-audio $d; done
  else  # ready dirs: checked, not made
    validate_data_dir.py $prep_train && validate_data_dir.py --require utt2spk,spk2utt,trials $prep_test
  fi
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: $feature_type fbank features"; SECONDS=0
  for d in $prep_dirs; do  # other features than Kaldi's: in a copy of the dir
    [ -z "$feats_tag" ] || copy_data_dir.py $d $(feats_dir $d)
    steps/make_fbank.sh --feature-type $feature_type --nj $nj --cmd "$cmd" $(feats_dir $d) $(feats_dir $d)/log fbank
  done
  log "Stage 1 done in ${SECONDS}s"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ "$noise_rate" != 0 ]; then
  log "Stage 2: simulate noisy correspondence ($noise_type, rate $noise_rate)"; SECONDS=0
  noise_opts=(--noise-type $noise_type)
  [ "$noise_type" != similar ] || noise_opts+=(--nearest-k $nearest_k)
  [ "$noise_type" != open ] || noise_opts+=(--outsiders $outsiders)
  steps/simulate_noise.py "${noise_opts[@]}" --seed $seed $noise_rate $train $noisy
  log "Stage 2 done in ${SECONDS}s"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: SupCon pretraining"; SECONDS=0
  if [ "$clean_reference" = true ] && [ "$noise_rate" != 0 ]; then
    steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides" $supcon_conf $train $clean
  fi
  steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides" $supcon_conf $noisy $pretrain
  log "Stage 3 done in ${SECONDS}s"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: GMM pair reliability"; SECONDS=0
  # shellcheck disable=SC2086
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $reliability_embed_opts \
    $pretrain/models/$reliability_from $noisy $pretrain/embeddings/$reliability_emb
  steps/reliability.py "${reliability_opts[@]}" $emb $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: from the pretrained model: $methods"; SECONDS=0
  train_methods              # local/methods.sh
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: embeddings and scoring"; SECONDS=0
  labels=noisy; [ "$noise_rate" != 0 ] || labels=given  # the labels the models trained on
  rows=("SupCon, $labels labels=$pretrain")
  [ "$clean_reference" = false ] || [ "$noise_rate" = 0 ] || rows=("SupCon, clean labels=$clean" "${rows[@]}")
  for method in $methods; do rows+=("$(method_row $method $labels)"); done
  reports=(--reliability-report $pretrain/reliability/report.json)
  [[ " $methods " != *" relabel"* ]] || reports+=(--relabel-report $relabelled/relabel.json)
  [[ " $methods " != *" regroup"* ]] || reports+=(--regroup-report $regrouped/regroup.json)
  for row in "${rows[@]}"; do
    model=${row#*=}
    data=$noisy  # the AS-Norm cohort has the labels the model had
    [ $model != $clean ] || data=$train
    [[ $model != exp/relabel* ]] || data=$relabelled
    [[ $model != exp/relabel_unlearn* ]] || data=$relabelled_kept
    [[ $model != exp/regroup* ]] || data=$regrouped
    [[ $model != exp/regroup_relabel* ]] || data=$regrouped_relabelled
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $test $model/embeddings/test
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $data $model/embeddings/train
    norm=(); [ "$scoring" = cosine ] || norm=(--mean $model/embeddings/train/mean.vec)
    steps/score.py "${norm[@]}" \
      --cohort $model/embeddings/train/xvector.scp --cohort-utt2spk $data/utt2spk --top-k 50 \
      --results exp/RESULTS.md $model/embeddings/test/xvector.scp $model/scores $test/trials
    # LLRs, calibrated on unseen speakers, or on the training speakers with their true labels (noisy
    # labels would make the LLRs underconfident)
    if [ -n "$calibration" ]; then
      steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $calibration \
        $model/embeddings/$(basename $calibration)
      steps/calibrate.py --results exp/RESULTS.md $model/embeddings/$(basename $calibration)/xvector.scp \
        $calibration $model/scores
    else
      steps/calibrate.py --results exp/RESULTS.md $model/embeddings/train/xvector.scp $train $model/scores
    fi
  done
  steps/summarize.py "${reports[@]}" --json $summary.json "${rows[@]}" | tee $summary.md
  log "Stage 6 done in ${SECONDS}s"
fi
