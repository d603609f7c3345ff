# Sourced by run.sh after its options: the data dirs and exp dirs of this run.
# Stage 0 makes prep_train, prep_test and prep_outsiders (prep_dirs, with the
# --calibration-dir), stage 1 their features in train, test, outsiders and
# calibration (feats_dir of each: the dir itself for Kaldi fbank, else data/<name>_sbfbank).
# An exp dir names the model, the protocol (and features other than Kaldi's), the labels and the seed:
#   exp/supcon_tuned_noisy0.2_seed0, exp/purl_paper_open0.2_seed1, exp/supcon_paper_sbfbank_noisy0.2_seed0
case $noise_type in permute|similar|open|merge|split) ;; *)
  echo "$0: --noise-type $noise_type: use permute, similar, open, merge or split (docs/noisy_label_benchmark.md)" >&2
  exit 1 ;; esac
[ "$noise_type" != open ] || { [ "$num_outsider_speakers" -gt 0 ] && [ -z "$train_dir" ]; } || {
  echo "$0: --noise-type open needs --num-outsider-speakers N: speakers of --corpus held out as the outsiders" \
       "(not with --train-dir)" >&2
  exit 1; }

prep_train=${train_dir:-data/train}
prep_test=${test_dir:-data/test}
prep_outsiders=data/outsiders
prep_dirs="$prep_train $prep_test"
[ "$num_outsider_speakers" = 0 ] || [ -n "$train_dir" ] || prep_dirs="$prep_dirs $prep_outsiders"
[[ -z "$calibration_dir" || " $prep_dirs " == *" $calibration_dir "* ]] || prep_dirs="$prep_dirs $calibration_dir"
[[ "$noise_type" != open || "$calibration_dir" != "$prep_outsiders" ]] || {
  echo "$0: --calibration-dir $prep_outsiders: under --noise-type open the outsiders' utterances are trained on;" \
       "calibrate on speakers no model saw" >&2
  exit 1; }
train=$(feats_dir $prep_train); test=$(feats_dir $prep_test); outsiders=$(feats_dir $prep_outsiders)
calibration=${calibration_dir:+$(feats_dir $calibration_dir)}
noise=noisy; [ "$noise_type" = permute ] || noise=$noise_type   # in names: data/train_open0.2_seed0
noisy=data/$(basename $train)_$noise${noise_rate}_seed$seed     # under data/, whatever train_dir is
[ "$noise_rate" != 0 ] || noisy=$train
method_dirs                                               # filtered, relabelled, relabelled_kept, regrouped, ...
suffix=${protocol}${feats_tag}_$noise${noise_rate}_seed$seed
pretrain=exp/supcon_$suffix                               # the model the methods start from
clean=exp/supcon_${protocol}${feats_tag}_clean_seed$seed
summary=exp/summary_$suffix                               # stage 6's table: .md and .json
# method_exp METHOD: the exp dir of a stage-5 method
method_exp() { echo "exp/${1/#filter/filter$filter_keep_ratio}_$suffix"; }

train_opts=(--gpus "$gpus" --valid-data $test)            # every training run's (held-out EER each epoch)
supcon_conf=${supcon_conf:-conf/$protocol/supcon.yaml}
purl_conf=${purl_conf:-conf/$protocol/purl.yaml}
emb=$pretrain/embeddings/$reliability_emb/xvector.scp    # stage 4's embeddings of the training set
