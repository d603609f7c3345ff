#!/usr/bin/env bash
# PURL on real read speech: speechocean762's training part (125 speakers, 2,646
# utterances, 16 kHz Opus; CC BY 4.0), 25 speakers held out for trials, with the
# mini recipe's stages and tiny CPU configs (its own copies in conf/: a change to
# egs/mini does not change this recipe). A check that the pipeline learns real
# voices, not a benchmark. Run from this folder:
#   bash run.sh                              # stages 0..6
#   bash run.sh --noise-rate 0               # without simulated noise
#   bash run.sh --protocol paper             # the original work's protocol (README: Fidelity)
set -euo pipefail
. ./cmd.sh                # job runners (train_cmd): ours, or Kaldi's run.pl/queue.pl/slurm.pl

# ---- what to run ------------------------------------------------------------
stage=0
stop_stage=6
nj=2                      # parallel jobs for features and embeddings
cmd=$train_cmd            # job runner for features and embeddings: see cmd.sh
gpus=""                   # "" trains on CPU; "0,1" trains on those GPUs

# ---- the corpus ---------------------------------------------------------------
# the corpus root (<speaker>/**/*.opus); $SPEECHOCEAN762 overrides the default
corpus=${SPEECHOCEAN762:-$(cd "$(dirname "$0")" && pwd)/../../../shared/data/speechocean762-train}
num_test_speakers=25      # held out for the trial list
corpus_seed=0             # the train/test split

# ---- the experiment -----------------------------------------------------------
# tuned: this project's settings (fresh optimizer for the update, unreliable pairs
#   kept as negatives, whole-utterance histogram-EM reliability, mean-subtracted cosine);
# paper: the original work's (the update continues the pretraining's Adam state and
#   cosine schedule, unreliable pairs leave SupCon's batch, one random crop per
#   utterance and sklearn's GMM at tol 1e-3, plain cosine, no gradient clipping)
protocol=tuned
seed=0                    # label noise and training; run 3 to see the spread
noise_rate=0.2            # fraction of training utterances filed under a wrong speaker
supcon_conf=conf/supcon.yaml
purl_conf=""              # "": conf/purl.yaml (tuned) or conf/purl_paper.yaml (paper)
reliability_conf=""       # stage 4: "": conf/reliability.yaml (tuned) or conf/reliability_paper.yaml (paper)
estimator=""              # stage 4 pair reliability: histogram, sklearn, bic or global ("": the conf's)
clean_reference=true      # also pretrain on the clean labels, to show what noise costs
filter_keep_ratio=0.5     # stage 5 filtering baseline: fraction of each speaker's utterances kept
train_overrides=""        # config overrides for every training run, e.g. "optim.epochs=1"
purl_overrides=""         # ... then these for the update and the control run, e.g. "optim.epochs=2"

. ./path.sh
. utils/parse_options.sh
# One spelling per rate: 0.0 and 0 (0.20 and 0.2) name the same dirs and skip the same stages.
noise_rate=$(awk -v r="$noise_rate" 'BEGIN { if (r < 0 || r >= 1) exit 1; print r + 0 }') || {
  echo "$0: --noise-rate must be in [0, 1) (0: the labels as given)" >&2; exit 1; }

case $protocol in
  tuned) tag=""; pretrain_overrides=""; purl_conf=${purl_conf:-conf/purl.yaml}
         reliability_conf=${reliability_conf:-conf/reliability.yaml}; embed_opts=""; reliability_emb=train; score_mean=true ;;
  paper) tag=_paper; pretrain_overrides="optim.grad_clip=0 train.amp=false"
         purl_conf=${purl_conf:-conf/purl_paper.yaml}
         reliability_conf=${reliability_conf:-conf/reliability_paper.yaml}; embed_opts="--num-crops 1 --crop-frames 200 --random-crop-seed $seed"
         reliability_emb=train_crop; score_mean=false ;;
  *) echo "$0: --protocol $protocol: use tuned or paper" >&2; exit 1 ;;
esac

train=data/train
test=data/test
noisy=data/train_noisy${noise_rate}_seed$seed
[ "$noise_rate" != 0 ] || noisy=$train
overrides="train.seed=$seed $train_overrides"
pretrain=exp/supcon${tag}_noisy${noise_rate}_seed$seed   # the model PURL starts from
clean=exp/supcon${tag}_clean_seed$seed
purl=exp/purl${tag}_noisy${noise_rate}_seed$seed
control=exp/control${tag}_noisy${noise_rate}_seed$seed
filtered=${noisy}_filtered$filter_keep_ratio              # the filtering baseline's training dir
filter=exp/filter${filter_keep_ratio}${tag}_noisy${noise_rate}_seed$seed
models="$pretrain $control $filter $purl"  # scored in stage 6
[ "$clean_reference" = false ] || [ "$noise_rate" = 0 ] || models="$clean $models"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: corpus and data dirs"; SECONDS=0
  local/prepare_folder_corpus.py --num-test-speakers $num_test_speakers --seed $corpus_seed $corpus $train $test
  for d in $train $test; do validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur --check-audio $d; done
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
  log "Stage 3: SupCon pretraining"; SECONDS=0
  if [ "$clean_reference" = true ] && [ "$noise_rate" != 0 ]; then
    steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides $pretrain_overrides" $supcon_conf $train $clean
  fi
  steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides $pretrain_overrides" $supcon_conf $noisy $pretrain
  log "Stage 3 done in ${SECONDS}s"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: GMM pair reliability"; SECONDS=0
  # final.pt is the last epoch (average_last 1): the checkpoint the update starts from
  # shellcheck disable=SC2086
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $embed_opts $pretrain/models/final.pt $noisy $pretrain/embeddings/$reliability_emb
  # shellcheck disable=SC2086
  reliability_opts=(--config $reliability_conf); [ -z "$estimator" ] || reliability_opts+=(--estimator $estimator)
  steps/reliability.py "${reliability_opts[@]}" \
    $pretrain/embeddings/$reliability_emb/xvector.scp $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: PURL update, its control run and the filtering baseline"; SECONDS=0
  init="purl.init_checkpoint=$pretrain/models/final.pt"
  # paper: the whole state at the end of the pretraining (last.pt, as its last epoch_<N>.pt)
  [ "$protocol" = tuned ] || init="purl.init_checkpoint=$pretrain/models/last.pt"
  steps/train.sh --gpus "$gpus" --valid-data $test \
    --overrides "$overrides $purl_overrides $init purl.reliability=$pretrain/reliability" $purl_conf $noisy $purl
  steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides $purl_overrides $init loss.type=supcon" \
    $purl_conf $noisy $control
  steps/filter_data_dir.py --keep-ratio $filter_keep_ratio $pretrain/embeddings/$reliability_emb/xvector.scp $noisy $filtered
  steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides $purl_overrides $init loss.type=supcon" \
    $purl_conf $filtered $filter
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: embeddings and scoring"; SECONDS=0
  for model in $models; do
    data=$noisy; [ $model != $clean ] || data=$train  # the cohort has the labels the model had
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $test $model/embeddings/test
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $data $model/embeddings/train
    norm=()  # the training mean subtracted (tuned) or plain cosine (paper); AS-Norm beside either
    [ "$score_mean" = false ] || norm=(--mean $model/embeddings/train/mean.vec)
    steps/score.py "${norm[@]}" \
      --cohort $model/embeddings/train/xvector.scp --cohort-utt2spk $data/utt2spk --top-k 50 \
      --results exp/RESULTS.md $model/embeddings/test/xvector.scp $model/scores $test/trials
  done
  labels=noisy; [ "$noise_rate" != 0 ] || labels=given  # the labels the models trained on
  rows=("SupCon, $labels labels=$pretrain" "$labels + control=$control"
        "$labels + filtering (keep $filter_keep_ratio)=$filter" "$labels + PURL=$purl")
  [ "$clean_reference" = false ] || [ "$noise_rate" = 0 ] || rows=("SupCon, clean labels=$clean" "${rows[@]}")
  steps/summarize.py --reliability-report $pretrain/reliability/report.json "${rows[@]}" \
    | tee exp/summary${tag}_noisy${noise_rate}_seed$seed.md
  log "Stage 6 done in ${SECONDS}s"
fi
