# Sourced by run.sh after its options: the data dirs and exp dirs of this run.
# An exp dir names the model, the protocol, the labels and the seed:
#   exp/supcon_tuned_noisy0.2_seed0, exp/purl_paper_open0.2_seed1, exp/filter0.5_tuned_noisy0.2_seed0
[ "$noise_type" != open ] || { [ "$num_outsider_speakers" -gt 0 ] && [ -z "$train_dir" ]; } || {
  echo "$0: --noise-type open needs --num-outsider-speakers N: speakers of --corpus held out as the outsiders" \
       "(not with --train-dir)" >&2
  exit 1; }

train=${train_dir:-data/train}
test=${test_dir:-data/test}
outsiders=data/outsiders
dirs="$train $test"; [ "$num_outsider_speakers" = 0 ] || [ -n "$train_dir" ] || dirs="$dirs $outsiders"
[[ -z "$calibration_dir" || " $dirs " == *" $calibration_dir "* ]] || dirs="$dirs $calibration_dir"  # stage 1's
[[ "$noise_type" != open || "$calibration_dir" != "$outsiders" ]] || {
  echo "$0: --calibration-dir $outsiders: under --noise-type open the outsiders' utterances are trained on;" \
       "calibrate on speakers no model saw" >&2
  exit 1; }
noise=noisy; [ "$noise_type" = permute ] || noise=$noise_type   # in names: data/train_open0.2_seed0
noisy=data/$(basename $train)_$noise${noise_rate}_seed$seed     # under data/, whatever train_dir is
[ "$noise_rate" != 0 ] || noisy=$train
derived=$noisy   # the dirs made from the pretrained model's embeddings name its seed (without noise too)
[ "$noise_rate" != 0 ] || derived=data/$(basename $train)_seed$seed
filtered=${derived}_filtered$filter_keep_ratio            # the filter method's training dir
relabelled=${derived}_relabelled                          # the relabel methods' training dir
relabelled_kept=${derived}_relabelled_kept                # relabel_unlearn's: the dropped kept, under their label
suffix=${protocol}_$noise${noise_rate}_seed$seed
pretrain=exp/supcon_$suffix                               # the model the methods start from
clean=exp/supcon_${protocol}_clean_seed$seed
summary=exp/summary_$suffix                               # stage 6's table: .md and .json
# method_exp METHOD: the exp dir of a stage-5 method
method_exp() { echo "exp/${1/#filter/filter$filter_keep_ratio}_$suffix"; }

supcon_conf=${supcon_conf:-conf/$protocol/supcon.yaml}
purl_conf=${purl_conf:-conf/$protocol/purl.yaml}
overrides="train.seed=$seed $train_overrides"
emb=$pretrain/embeddings/$reliability_emb/xvector.scp    # stage 4's embeddings of the training set
