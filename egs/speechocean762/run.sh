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
corpus=${SPEECHOCEAN762:-$(cd "$(dirname "$(readlink -f "$0")")" && pwd)/../../../shared/data/speechocean762-train}
num_test_speakers=25      # held out for the trial list
num_outsider_speakers=0   # held out as the source of open-set noise (--noise-type open): never trained on or tested
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
noise_type=permute        # stage 2: permute (to any other speaker), similar (to one of the nearest_k
                          #   nearest speakers) or open (outsiders' utterances; needs num_outsider_speakers)
nearest_k=5               # similar: destinations per speaker
supcon_conf=conf/supcon.yaml
purl_conf=""              # "": conf/purl.yaml (tuned) or conf/purl_paper.yaml (paper)
reliability_conf=""       # stage 4: "": conf/reliability.yaml (tuned) or conf/reliability_paper.yaml (paper)
estimator=""              # stage 4 pair reliability: histogram, sklearn, bic or global ("": the conf's)
clean_reference=true      # also pretrain on the clean labels, to show what noise costs
methods="control filter purl relabel"  # stage 5, each from the pretrained model: control (SupCon on the noisy
                          #   labels), filter, purl, relabel (SupCon on relabelled labels), relabel_purl (PURL
                          #   on them, weights fitted again), relabel_retrain (stage 3 again, from scratch, on
                          #   them), reestimate (PURL re-fitting every reestimate_every epochs)
filter_keep_ratio=0.5     # stage 5 filtering baseline: fraction of each speaker's utterances kept
relabel_opts=""           # stage 5 relabel method: options of steps/relabel_data_dir.py, e.g. "--margin 0.2"
reestimate_every=2        # stage 5 reestimate method: epochs between re-fits of the pair weights
train_overrides=""        # config overrides for every training run, e.g. "optim.epochs=1"
purl_overrides=""         # ... then these for the update and the control run, e.g. "optim.epochs=2"

. ./path.sh
. utils/parse_options.sh
# One spelling per rate: 0.0 and 0 (0.20 and 0.2) name the same dirs and skip the same stages.
noise_rate=$(awk -v r="$noise_rate" 'BEGIN { if (r < 0 || r >= 1) exit 1; print r + 0 }') || {
  echo "$0: --noise-rate must be in [0, 1) (0: the labels as given)" >&2; exit 1; }

[ "$noise_type" != open ] || [ "$num_outsider_speakers" -gt 0 ] || {
  echo "$0: --noise-type open needs --num-outsider-speakers N (speakers held out as the outsiders)" >&2; exit 1; }

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
outsiders=data/outsiders
noise=noisy; [ "$noise_type" = permute ] || noise=$noise_type   # in names: data/train_open0.2_seed0
noisy=data/train_$noise${noise_rate}_seed$seed
[ "$noise_rate" != 0 ] || noisy=$train
overrides="train.seed=$seed $train_overrides"
pretrain=exp/supcon${tag}_$noise${noise_rate}_seed$seed   # the model the methods start from
clean=exp/supcon${tag}_clean_seed$seed
filtered=${noisy}_filtered$filter_keep_ratio              # the filtering baseline's training dir
relabelled=${noisy}_relabelled                            # the relabel method's training dir
reliability_opts=(--config $reliability_conf --nj $nj); [ -z "$estimator" ] || reliability_opts+=(--estimator $estimator)
# method_exp METHOD: the exp dir of a stage-5 method
method_exp() {
  local name=$1; [ "$1" != filter ] || name=filter$filter_keep_ratio
  echo exp/$name${tag}_$noise${noise_rate}_seed$seed
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: corpus and data dirs"; SECONDS=0
  local/prepare_folder_corpus.py --num-test-speakers $num_test_speakers --seed $corpus_seed \
    --num-outsider-speakers $num_outsider_speakers --outsider-dir $outsiders $corpus $train $test
  dirs="$train $test"; [ "$num_outsider_speakers" = 0 ] || dirs="$dirs $outsiders"
  for d in $dirs; do validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur --check-audio $d; done
  log "Stage 0 done in ${SECONDS}s"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: fbank features"; SECONDS=0
  dirs="$train $test"; [ "$num_outsider_speakers" = 0 ] || dirs="$dirs $outsiders"
  for d in $dirs; do steps/make_fbank.sh --nj $nj --cmd "$cmd" $d $d/log fbank; done
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
  steps/reliability.py "${reliability_opts[@]}" \
    $pretrain/embeddings/$reliability_emb/xvector.scp $noisy $pretrain/reliability
  log "Stage 4 done in ${SECONDS}s"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: from the pretrained model: $methods"; SECONDS=0
  init="purl.init_checkpoint=$pretrain/models/final.pt"
  # paper: the whole state at the end of the pretraining (last.pt, as its last epoch_<N>.pt)
  [ "$protocol" = tuned ] || init="purl.init_checkpoint=$pretrain/models/last.pt"
  update="$overrides $purl_overrides $init"
  emb=$pretrain/embeddings/$reliability_emb/xvector.scp
  # the relabelled labels, once for the methods that train on them
  # shellcheck disable=SC2086
  [[ " $methods " != *" relabel"* ]] || steps/relabel_data_dir.py $relabel_opts $emb $noisy $relabelled
  for method in $methods; do
    case $method in
      control) steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$update loss.type=supcon" \
                 $purl_conf $noisy $(method_exp control) ;;
      filter)  steps/filter_data_dir.py --keep-ratio $filter_keep_ratio $emb $noisy $filtered
               steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$update loss.type=supcon" \
                 $purl_conf $filtered $(method_exp filter) ;;
      purl)    steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$update purl.reliability=$pretrain/reliability" \
                 $purl_conf $noisy $(method_exp purl) ;;
      reestimate) steps/train.sh --gpus "$gpus" --valid-data $test \
                 --overrides "$update purl.reliability=$pretrain/reliability purl.reestimate_every=$reestimate_every" \
                 $purl_conf $noisy $(method_exp reestimate) ;;
      relabel) steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$update loss.type=supcon" \
                 $purl_conf $relabelled $(method_exp relabel) ;;
      relabel_retrain) steps/train.sh --gpus "$gpus" --valid-data $test --overrides "$overrides $pretrain_overrides" \
                 $supcon_conf $relabelled $(method_exp relabel_retrain) ;;
      relabel_purl)
               # the pair weights fitted again, on the new labels
               steps/reliability.py "${reliability_opts[@]}" $emb $relabelled $pretrain/reliability_relabelled
               steps/train.sh --gpus "$gpus" --valid-data $test \
                 --overrides "$update purl.reliability=$pretrain/reliability_relabelled" \
                 $purl_conf $relabelled $(method_exp relabel_purl) ;;
      *) echo "$0: unknown method '$method' in --methods (control filter purl reestimate relabel relabel_purl" \
              "relabel_retrain)" >&2
         exit 1 ;;
    esac
  done
  log "Stage 5 done in ${SECONDS}s"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: embeddings and scoring"; SECONDS=0
  labels=noisy; [ "$noise_rate" != 0 ] || labels=given  # the labels the models trained on
  rows=("SupCon, $labels labels=$pretrain")
  reports=(--reliability-report $pretrain/reliability/report.json)
  [ "$clean_reference" = false ] || [ "$noise_rate" = 0 ] || rows=("SupCon, clean labels=$clean" "${rows[@]}")
  for method in $methods; do
    case $method in
      control) rows+=("$labels + control=$(method_exp control)") ;;
      filter) rows+=("$labels + filtering (keep $filter_keep_ratio)=$(method_exp filter)") ;;
      purl) rows+=("$labels + PURL=$(method_exp purl)") ;;
      reestimate) rows+=("$labels + PURL, re-estimated every $reestimate_every=$(method_exp reestimate)") ;;
      relabel) rows+=("$labels, relabelled=$(method_exp relabel)") ;;
      relabel_purl) rows+=("$labels, relabelled + PURL=$(method_exp relabel_purl)") ;;
      relabel_retrain) rows+=("$labels, relabelled, retrained=$(method_exp relabel_retrain)") ;;
    esac
  done
  [[ " $methods " != *" relabel"* ]] || reports+=(--relabel-report $relabelled/relabel.json)
  for row in "${rows[@]}"; do
    model=${row#*=}
    data=$noisy  # the cohort has the labels the model had
    [ $model != $clean ] || data=$train
    case $model in $(method_exp relabel)|$(method_exp relabel_purl)|$(method_exp relabel_retrain)) data=$relabelled ;; esac
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $test $model/embeddings/test
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $model/models/final.pt $data $model/embeddings/train
    norm=()  # the training mean subtracted (tuned) or plain cosine (paper); AS-Norm beside either
    [ "$score_mean" = false ] || norm=(--mean $model/embeddings/train/mean.vec)
    steps/score.py "${norm[@]}" \
      --cohort $model/embeddings/train/xvector.scp --cohort-utt2spk $data/utt2spk --top-k 50 \
      --results exp/RESULTS.md $model/embeddings/test/xvector.scp $model/scores $test/trials
    # LLRs, calibrated on training speakers with their true labels (noisy ones make the LLRs underconfident)
    steps/calibrate.py --results exp/RESULTS.md $model/embeddings/train/xvector.scp $train $model/scores
  done
  summary=exp/summary${tag}_$noise${noise_rate}_seed$seed
  steps/summarize.py "${reports[@]}" --json $summary.json "${rows[@]}" | tee $summary.md
  log "Stage 6 done in ${SECONDS}s"
fi
