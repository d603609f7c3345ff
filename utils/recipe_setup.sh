# Sourced by every recipe's run.sh after utils/parse_options.sh: checks the
# options the recipes share and reads the protocol, conf/<protocol>/: its YAML
# files, and stages.conf, what run.sh's stages do differently under it.
#   protocol     a folder of conf/ (paper: the original work's; tuned: this project's)
#   noise_rate   in [0, 1); one spelling per rate: 0.0 and 0 (0.20 and 0.2) name the same dirs
#   train_dir, test_dir   both or neither
#   feature_type, normalise   stage 1's features and what inputs are mean-normalised over ("": the protocol's)
# Sets reliability_conf (when ""), reliability_opts, stage 4's embedding
# options: reliability_embed_opts and reliability_emb, the folder under the
# pretraining's embeddings/ (train: whole utterances; train_crop: one crop each),
# overrides (every training run's), and feats_tag and feats_dir for the names.

[ -f "conf/$protocol/stages.conf" ] || {
  echo "$0: --protocol $protocol: no conf/$protocol/stages.conf (protocols: $(cd conf && ls -d */ | tr -d / | tr '\n' ' '))" >&2
  exit 1; }
. "conf/$protocol/stages.conf"
case $scoring in cosine|mean|asnorm) ;; *) echo "$0: --scoring $scoring: use cosine, mean or asnorm" >&2; exit 1 ;; esac
case $feature_type in  # the tag of the data dirs and exp dirs of other features than Kaldi fbank
  kaldi) feats_tag="" ;;
  speechbrain) feats_tag=_sbfbank ;;
  *) echo "$0: --feature-type $feature_type: use kaldi (Kaldi fbank) or speechbrain (the original's front end)" >&2
     exit 1 ;;
esac
case $normalise in utterance|crop) ;; *)
  echo "$0: --normalise $normalise: use utterance (each training chunk and stage-4 crop over its utterance)" \
       "or crop (over itself, the original's)" >&2; exit 1 ;; esac

noise_rate=$(awk -v r="$noise_rate" 'BEGIN { if (r < 0 || r >= 1) exit 1; print r + 0 }') || {
  echo "$0: --noise-rate must be in [0, 1) (0: the labels as given)" >&2; exit 1; }

if [ -n "${train_dir+set}" ] && [ "${train_dir:+x}" != "${test_dir:+x}" ]; then
  echo "$0: --train-dir and --test-dir go together (a ready training dir, and a test dir with trials)" >&2; exit 1
fi

reliability_conf=${reliability_conf:-conf/$protocol/reliability.yaml}
reliability_opts=(--config $reliability_conf --nj $nj); [ -z "$estimator" ] || reliability_opts+=(--estimator $estimator)
reliability_embed_opts=""; reliability_emb=train
if [ "$reliability_crop" != 0 ]; then
  reliability_embed_opts="--num-crops 1 --crop-frames $reliability_crop --random-crop-seed $seed --normalise $normalise"
  reliability_emb=train_crop
fi
overrides="train.seed=$seed data.normalise=$normalise $train_overrides"  # every training run's

# feats_dir DIR: the data dir with DIR's features of $feature_type, which stage 1 makes: DIR itself for
# Kaldi fbank, else a copy of DIR under data/ (wherever DIR is) named with the tag: data/vox1_sbfbank
feats_dir() { if [ -z "$feats_tag" ]; then echo "$1"; else echo "data/$(basename "$1")$feats_tag"; fi; }

# method_dirs: sets the data dirs stage 5's methods make from the pretrained model's embeddings of
# $noisy (filtered, relabelled, relabelled_kept, regrouped, regrouped_relabelled). They name its seed also without noise, where the
# training dir itself is shared by the seeds: data/train_seed0_filtered0.5, data/train_noisy0.2_seed0_relabelled
method_dirs() {
  local base=$noisy; [ "$noise_rate" != 0 ] || base=data/$(basename "$train")_seed$seed
  filtered=${base}_filtered$filter_keep_ratio   # filter's: the utterances nearest their centroid
  relabelled=${base}_relabelled                 # relabel's: the labels steps/relabel_data_dir.py proposes
  relabelled_kept=${base}_relabelled_kept       # relabel_unlearn's: and those it would drop, under their label
  regrouped=${base}_regrouped                   # regroup's: labels split and joined by steps/regroup_data_dir.py
  regrouped_relabelled=${regrouped}_relabelled  # regroup_relabel's: those relabelled
}
