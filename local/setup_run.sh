# Sourced by the VoxCeleb and CN-Celeb recipes after utils/recipe_setup.sh:
#   . local/setup_run.sh <train-dir> <test-dir> <trial-list> [<preflight options for stage 0's inputs>]
# with the dirs stage 0 makes from the recipe's corpus and the trial list its
# test dir must have. Sets the data dirs (those, or your own: --corpus, or
# --train-dir and --test-dir): stage 0's, prep_train, prep_test and prep_valid,
# and train, test and valid with stage 1's features (feats_dir of each: the dir
# itself, or data/<name>_sbfbank); the protocol's configs, the exp dirs
#   exp/<model>_<method>_<protocol><feats_tag>_<noise><rate>_seed<seed>  (model: ecapa, ecapa_aug_sp, resnet34, ...;
#   noise: noisy for permute, similar)
# and runs the preflight: configs, processes, GPUs, and the inputs of the first stage.

if [ -n "$corpus" ]; then      # a folder per speaker: stage 0 splits it
  source_dir=data/train; prep_test=data/test; trial_list=trials; stage0_inputs=(--require-dir "$corpus")
elif [ -n "$train_dir" ]; then  # ready data dirs
  source_dir=$train_dir; prep_test=$test_dir; trial_list=trials
  stage0_inputs=(--require-dir "$train_dir" --require-dir "$test_dir")
else
  source_dir=$1; prep_test=$2; trial_list=$3; shift 3; stage0_inputs=("$@")
fi
prep_train=$source_dir; [ "${speed_perturb:-false}" = false ] || prep_train=data/$(basename $source_dir)_sp
prep_valid=""  # held-out metrics each training epoch: the original's VoxCeleb2 validation trials
[ -z "${vox2_valid_pairs:-}" ] || [ $source_dir != data/vox2_dev ] || prep_valid=data/vox2_valid
train=$(feats_dir $prep_train); test=$(feats_dir $prep_test); valid=${prep_valid:+$(feats_dir $prep_valid)}
valid_opt=(); [ -z "$valid" ] || valid_opt=(--valid-data $valid)
[ "${augment:-false}" = false ] || [ "$feature_type" = kaldi ] || {
  echo "$0: --augment true computes Kaldi fbank of each augmented chunk; give --feature-type kaldi" >&2; exit 1; }
case $noise_type in  # open noise needs outsiders: speakers neither trained on nor tested, which VoxCeleb's split lacks
  permute|similar|merge|split) ;;
  *) echo "$0: --noise-type $noise_type: use permute, similar, merge or split (egs/mini simulates open noise too)" >&2; exit 1 ;;
esac
noise=noisy; [ "$noise_type" = permute ] || noise=$noise_type   # in names: data/vox2_dev_similar0.2_seed0
noisy=data/$(basename $train)_$noise${noise_rate}_seed$seed     # under data/, whatever train_dir is
[ "$noise_rate" != 0 ] || noisy=$train
method_dirs                                      # filtered, relabelled, relabelled_kept
cohort=${noisy}_cohort$cohort_utts_per_speaker   # AS-Norm and calibration cohort

supcon_conf=conf/$protocol/${model}_supcon.yaml
[ "${augment:-false}" = false ] || supcon_conf=conf/$protocol/${model}_supcon_aug.yaml
purl_conf=conf/$protocol/${model}_purl_30ep.yaml
purl_overrides=""
if [ -n "${score_epochs:-}" ]; then  # the updates keep the checkpoints stage 6 scores
  [[ $score_epochs =~ ^([0-9]+):([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ] || {
    echo "$0: --score-epochs '$score_epochs': give A:B with A <= B, e.g. 201:230" >&2; exit 1; }
  purl_overrides="train.keep_epochs=[$(seq -s, "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")]"
fi

name=$model                                  # experiment names say how the model was trained
[ "${augment:-false}" = false ] || name=${name}_aug
[ "${speed_perturb:-false}" = false ] || name=${name}_sp
suffix=${protocol}${feats_tag}_$noise${noise_rate}_seed$seed
pretrain=exp/${name}_supcon_$suffix
# method_exp METHOD: the exp dir of a stage-5 method (local/methods.sh)
method_exp() { echo "exp/${name}_${1/#filter/filter$filter_keep_ratio}_$suffix"; }
updates=$(for m in $methods; do method_exp $m; done | paste -sd ' ')  # stage 5's, from the pretrained model
models="$pretrain $updates"                          # scored in stage 6
train_opts=(--gpus "$gpus" --slurm $slurm "${valid_opt[@]}")  # every training run's
emb=$pretrain/embeddings/$reliability_emb/xvector.scp   # stage 4's embeddings of the training set

log "Preflight: configs, processes, devices, inputs"
preflight=(--config $supcon_conf --config $purl_conf --overrides "$overrides $purl_overrides")
[ $stop_stage -lt 3 ] || preflight+=(--gpus "$gpus")  # stages 3-6 use the GPUs
if [ $stage -le 0 ]; then
  preflight+=("${stage0_inputs[@]}")
elif [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  scored=$test; [ $stage -gt 1 ] || scored=$prep_test  # the dir of stage 0, which stage 1 gives features
  preflight+=(--trials "$scored/$trial_list")
fi
steps/preflight.py "${preflight[@]}"
