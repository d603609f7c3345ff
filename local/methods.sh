# Sourced by every recipe's run.sh (egs/mini/local/methods.sh links here): the
# stage-5 methods, each trained from the pretrained model ($pretrain) on the
# noisy labels or on what it made of them, and its row in stage 6's table. Uses
# the recipe's names (egs/mini/local/names.sh, local/setup_run.sh): overrides,
# purl_overrides, pretrain, update_from, supcon_conf, purl_conf, noisy, emb,
# reliability_opts, the method dirs (utils/recipe_setup.sh's method_dirs),
# method_exp, and train_opts (the options of every training run: GPUs, Slurm,
# held-out data); and relabel_opts, reestimate_every, orgate_top_k of run.sh.
#   control          SupCon on the noisy labels, as long as the update: what PURL is measured against
#   filter           SupCon on the utterances stage 4 trusts most (filter_keep_ratio of each speaker's)
#   purl             the PURL update with stage 4's pair weights
#   reestimate       PURL, the pair weights fitted again every reestimate_every epochs
#   relabel          SupCon on the labels steps/relabel_data_dir.py corrected
#   relabel_purl     PURL on them, the pair weights fitted again on the new labels
#   relabel_retrain  stage 3 again, from scratch, on them
#   relabel_unlearn  PURL on the relabelled labels with the utterances relabelling would drop kept under
#                    their old label and repelled from it (w = 0 for their pairs, 1 for every other)
#   orgate           SupCon on the noisy labels, drawing only the utterances whose label is among their
#                    orgate_top_k nearest speaker centroids at any epoch so far (OR-Gate, Fang et al. 2023)
METHODS="control filter purl reestimate relabel relabel_purl relabel_retrain relabel_unlearn orgate"
for method in $methods; do  # checked now, not when stage 5 comes after days of pretraining
  [[ " $METHODS " == *" $method "* ]] || { echo "$0: --methods: unknown method '$method' (methods: $METHODS)" >&2; exit 1; }
done

# train_methods: stage 5, every method of $methods from the pretrained model (the relabelled labels
# made once, first, for the methods that train on them)
train_methods() {
  local method
  # shellcheck disable=SC2086
  [[ " $methods " != *" relabel"* ]] || steps/relabel_data_dir.py $relabel_opts $emb $noisy $relabelled
  for method in $methods; do train_method $method; done
}

# train_method METHOD
train_method() {
  local update="$overrides $purl_overrides purl.init_checkpoint=$pretrain/models/$update_from" exp
  exp=$(method_exp $1)
  case $1 in
    control) steps/train.sh "${train_opts[@]}" --overrides "$update loss.type=supcon" \
               $purl_conf $noisy $exp ;;
    filter)  steps/filter_data_dir.py --keep-ratio $filter_keep_ratio $emb $noisy $filtered
             steps/train.sh "${train_opts[@]}" --overrides "$update loss.type=supcon" \
               $purl_conf $filtered $exp ;;
    purl)    steps/train.sh "${train_opts[@]}" --overrides "$update purl.reliability=$pretrain/reliability" \
               $purl_conf $noisy $exp ;;
    reestimate) steps/train.sh "${train_opts[@]}" \
               --overrides "$update purl.reliability=$pretrain/reliability purl.reestimate_every=$reestimate_every" \
               $purl_conf $noisy $exp ;;
    relabel) steps/train.sh "${train_opts[@]}" --overrides "$update loss.type=supcon" \
               $purl_conf $relabelled $exp ;;
    relabel_retrain) steps/train.sh "${train_opts[@]}" --overrides "$overrides" \
               $supcon_conf $relabelled $exp ;;
    relabel_unlearn)
             # shellcheck disable=SC2086
             steps/relabel_data_dir.py $relabel_opts --keep-dropped $emb $noisy $relabelled_kept
             steps/train.sh "${train_opts[@]}" \
               --overrides "$update purl.unreliable_utts=$relabelled_kept/unreliable_utts" $purl_conf $relabelled_kept $exp ;;
    orgate)  steps/train.sh "${train_opts[@]}" \
               --overrides "$update loss.type=supcon orgate.top_k=$orgate_top_k" $purl_conf $noisy $exp ;;
    relabel_purl)
             steps/reliability.py "${reliability_opts[@]}" $emb $relabelled $pretrain/reliability_relabelled
             steps/train.sh "${train_opts[@]}" \
               --overrides "$update purl.reliability=$pretrain/reliability_relabelled" $purl_conf $relabelled $exp ;;
  esac
}

# method_row METHOD LABELS: "<row label>=<exp dir>" for steps/summarize.py
method_row() {
  local label
  case $1 in
    control) label="$2 + control" ;;
    filter) label="$2 + filtering (keep $filter_keep_ratio)" ;;
    purl) label="$2 + PURL" ;;
    reestimate) label="$2 + PURL, re-estimated every $reestimate_every" ;;
    relabel) label="$2, relabelled" ;;
    relabel_purl) label="$2, relabelled + PURL" ;;
    relabel_retrain) label="$2, relabelled, retrained" ;;
    relabel_unlearn) label="$2, relabelled + unlearn dropped" ;;
    orgate) label="$2 + OR-Gate (top $orgate_top_k)" ;;
    *) label=$1 ;;
  esac
  echo "$label=$(method_exp $1)"
}
