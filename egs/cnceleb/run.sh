#!/usr/bin/env bash
# PURL on CN-Celeb: SupCon pretraining on CN-Celeb1 dev + CN-Celeb2 (optionally
# with simulated label noise), GMM pair reliability, the PURL update beside a
# control run and a filtering baseline, and scoring on CN-Celeb1 eval: the
# released concatenated enrollment files (trials_concat, the original work's
# protocol) and enrollment models averaged over their utterances
# (avg_enroll_trials); or the same on a corpus of your own. The models, configs
# and protocols are egs/voxceleb's (conf/ is linked): paper (the default) or tuned.
# Run from this folder:
#   bash run.sh --stage 0 --stop-stage 1
#   bash run.sh --train-dir data/my_train --test-dir data/my_test  # ready Kaldi data dirs
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): see cmd.sh
stage=0
stop_stage=6
nj=16                     # parallel jobs for features and embeddings; processes of stage 4's sklearn fits
cmd=$train_cmd            # job runner for features and embeddings
gpus="0,1,2,3,4,5,6,7"    # GPUs for training (torchrun processes); "" for CPU
slurm=false               # true: training through srun, one torchrun per node (PURL_SRUN_OPTS: --nodes, --gres, ...)

# ---- the corpus: CN-Celeb (https://www.openslr.org/82/, v2 releases, flac), or your own
cn1_root=/data/CN-Celeb_flac    # data/ dev/dev.lst eval/{enroll,test,lists}
cn2_root=/data/CN-Celeb2_flac   # data/ spk.lst; "" trains on CN-Celeb1 dev only
corpus=""                 # instead of CN-Celeb: your own, a folder per speaker (<speaker>/**/*.wav|flac|m4a...),
num_test_speakers=25      #   this many of them held out for trials
train_dir=""              # or ready Kaldi data dirs (wav.scp, utt2spk; stage 1 adds features): train on
test_dir=""               #   train_dir, score test_dir's trials

# ---- the experiment -----------------------------------------------------------
protocol=paper            # conf/paper/ (the original work's) or conf/tuned/ (this project's)
feature_type=""           # stage 1: kaldi (Kaldi fbank) or speechbrain (the original's front end); "": the protocol's
normalise=""              # mean normalisation of training chunks and stage 4's crops: utterance or crop (the original's); "": the protocol's
model=ecapa               # ecapa or resnet34: conf/<protocol>/<model>_supcon.yaml, <model>_purl_30ep.yaml
noise_rate=0.2            # simulated label noise (0: train on the labels as they are)
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
cohort_utts_per_speaker=20  # AS-Norm and calibration cohort: speaker means over this many utterances each
train_overrides=""        # config overrides for every training run, e.g. "data.num_workers=8"

. ./path.sh
. utils/parse_options.sh
. utils/recipe_setup.sh   # conf/$protocol/stages.conf; checks
. local/methods.sh        # stage 5's methods (checked now)
. local/setup_run.sh data/cnceleb_train data/cnceleb1_eval trials_concat --require-dir "$cn1_root" \
  ${cn2_root:+--require-dir "$cn2_root"}  # names, preflight

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: data preparation"; SECONDS=0
  if [ -n "$corpus" ]; then
    local/prepare_folder_corpus.py --num-test-speakers $num_test_speakers $corpus $prep_train $prep_test
  elif [ -z "$train_dir" ]; then
    local/prepare_cnceleb.py ${cn2_root:+--cn2-root $cn2_root} $cn1_root data
  fi
  audio=(wav.scp,utt2dur, wav.scp,utt2dur,); [ -z "$train_dir" ] || audio=("" "")  # ready dirs may hold features only
  validate_data_dir.py --require ${audio[0]}utt2spk,spk2utt $prep_train
  validate_data_dir.py --require ${audio[1]}utt2spk,spk2utt,$trial_list $prep_test
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: $feature_type fbank features"; SECONDS=0
  steps/preflight.py --data-dir $prep_train --data-dir $prep_test --fbank-dir fbank  # audio readers, disk space
  for d in $prep_train $prep_test; do  # other features than Kaldi's: in a copy of the dir
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
  steps/train.sh --gpus "$gpus" --slurm $slurm --overrides "$overrides" $supcon_conf $noisy $pretrain
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
  log "Stage 6: embeddings and scoring on $test"; SECONDS=0
  [ -f $cohort/utt2spk ] || subset_data_dir.py --per-speaker $cohort_utts_per_speaker $noisy $cohort
  for m in $models; do
    eval=$m/embeddings/$(basename $test)
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $test $eval
    trials=$test/$trial_list
    if [ -f $test/enroll_avg ]; then  # the enrollment models of avg_enroll_trials: means of their utterances
      steps/average_embeddings.py $eval/xvector.scp $test/enroll_avg ${eval}_avg
      eval=${eval}_avg; trials="$trials $test/avg_enroll_trials"
    fi
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $m/models/final.pt $cohort $m/embeddings/cohort
    norm=()  # cosine: plain, as the original; mean: minus the training mean; asnorm: and AS-Norm
    [ "$scoring" = cosine ] || norm=(--mean $m/embeddings/cohort/mean.vec)
    [ "$scoring" != asnorm ] || norm+=(--cohort $m/embeddings/cohort/xvector.scp --cohort-utt2spk $cohort/utt2spk --top-k 300)
    # shellcheck disable=SC2086
    steps/score.py "${norm[@]}" --results exp/RESULTS.md $eval/xvector.scp $m/scores $trials
    # calibration to LLRs on trials drawn from training speakers of the cohort dir, with the labels before
    # simulated noise (noisy ones make the LLRs underconfident); never on the test set
    steps/calibrate.py --results exp/RESULTS.md $m/embeddings/cohort/xvector.scp $train $m/scores
  done
  log "Stage 6 done in ${SECONDS}s"
fi
