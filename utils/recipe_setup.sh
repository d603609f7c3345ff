# Sourced by every recipe's run.sh after utils/parse_options.sh: checks the
# options the recipes share and reads the protocol, conf/<protocol>/: its YAML
# files, and stages.conf, what run.sh's stages do differently under it.
#   protocol     a folder of conf/ (paper: the original work's; tuned: this project's)
#   noise_rate   in [0, 1); one spelling per rate: 0.0 and 0 (0.20 and 0.2) name the same dirs
#   train_dir, test_dir   both or neither
# Sets reliability_conf (when ""), reliability_opts, and stage 4's embedding
# options: reliability_embed_opts and reliability_emb, the folder under the
# pretraining's embeddings/ (train: whole utterances; train_crop: one crop each).

[ -f "conf/$protocol/stages.conf" ] || {
  echo "$0: --protocol $protocol: no conf/$protocol/stages.conf (protocols: $(cd conf && ls -d */ | tr -d / | tr '\n' ' '))" >&2
  exit 1; }
. "conf/$protocol/stages.conf"
case $scoring in cosine|mean|asnorm) ;; *) echo "$0: --scoring $scoring: use cosine, mean or asnorm" >&2; exit 1 ;; esac

noise_rate=$(awk -v r="$noise_rate" 'BEGIN { if (r < 0 || r >= 1) exit 1; print r + 0 }') || {
  echo "$0: --noise-rate must be in [0, 1) (0: the labels as given)" >&2; exit 1; }

if [ -n "${train_dir+set}" ] && [ "${train_dir:+x}" != "${test_dir:+x}" ]; then
  echo "$0: --train-dir and --test-dir go together (a ready training dir, and a test dir with trials)" >&2; exit 1
fi

reliability_conf=${reliability_conf:-conf/$protocol/reliability.yaml}
reliability_opts=(--config $reliability_conf --nj $nj); [ -z "$estimator" ] || reliability_opts+=(--estimator $estimator)
reliability_embed_opts=""; reliability_emb=train
if [ "$reliability_crop" != 0 ]; then
  reliability_embed_opts="--num-crops 1 --crop-frames $reliability_crop --random-crop-seed $seed"; reliability_emb=train_crop
fi
