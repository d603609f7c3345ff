# Sourced by every recipe's run.sh (egs/mini/local/methods.sh links here): the
# stage-5 methods, each trained from the pretrained model ($pretrain) on the
# noisy labels or on what it made of them, and its row in stage 6's table. Uses
# the recipe's names (egs/mini/local/names.sh, local/setup_run.sh): overrides,
# purl_overrides, pretrain, update_from, supcon_conf, purl_conf, noisy, emb,
# reliability_opts, the method dirs (utils/recipe_setup.sh's method_dirs),
# method_exp, and train_opts (the options of every training run: GPUs, Slurm,
# held-out data); and relabel_opts, relabel_rounds, retrain_min_changed, reestimate_every, orgate_top_k
# of run.sh.
#   control          SupCon on the noisy labels, as long as the update: what PURL is measured against
#   filter           SupCon on the utterances stage 4 trusts most (filter_keep_ratio of each speaker's)
#   purl             the PURL update with stage 4's pair weights
#   reestimate       PURL, the pair weights fitted again every reestimate_every epochs
#   relabel          SupCon on the labels steps/relabel_data_dir.py corrected (relabel_rounds: see relabel_labels)
#   relabel_purl     PURL on them, the pair weights fitted again on the new labels
#   relabel_retrain  stage 3 again, from scratch, on them, when relabelling changed at least retrain_min_changed
#                    of the labels; on fewer, relabel's update (a second pretraining on nearly the same labels
#                    only draws the first one's seed spread again, at the cost of a pretraining), in
#                    relabel's dir (a link) when relabel is among the methods too
#   relabel_unlearn  PURL on the relabelled labels with the utterances relabelling would drop kept under
#                    their old label and repelled from it (w = 0 for their pairs, 1 for every other)
#   regroup          SupCon on the labels steps/regroup_data_dir.py regrouped: a label holding two voices
#                    split, two labels of one voice joined (merge and split noise; relabelling moves
#                    single utterances between labels that are each one voice)
#   regroup_relabel  SupCon on the regrouped labels relabelled (relabel_rounds, as relabel)
#   orgate           SupCon on the noisy labels, drawing only the utterances whose label is among their
#                    orgate_top_k nearest speaker centroids at any epoch so far (OR-Gate, Fang et al. 2023)
METHODS="control filter purl reestimate relabel relabel_purl relabel_retrain relabel_unlearn regroup regroup_relabel orgate"
for method in $methods; do  # checked now, not when stage 5 comes after days of pretraining
  [[ " $METHODS " == *" $method "* ]] || { echo "$0: --methods: unknown method '$method' (methods: $METHODS)" >&2; exit 1; }
done
[[ "$relabel_rounds" =~ ^[1-9]$ ]] || {
  echo "$0: --relabel-rounds '$relabel_rounds': give a whole number from 1 to 9 (1: one proposal from stage 4)" >&2; exit 1; }
awk -v x="$retrain_min_changed" 'BEGIN { exit !(x ~ /^(0|1|0?\.[0-9]+|1\.0*)$/) }' || {
  echo "$0: --retrain-min-changed '$retrain_min_changed': give a share of the labels from 0 to 1 (0: always retrain)" >&2; exit 1; }

# train_methods: stage 5, every method of $methods from the pretrained model (the relabelled labels
# made once, first, for the methods that train on them)
train_methods() {
  local method
  [[ " $methods " != *" relabel"* ]] || relabel_labels $noisy $relabelled relabel
  for method in $methods; do train_method $method; done
}

# relabel_labels LABELS OUT METHOD: OUT, the labels relabelling proposes from the data dir LABELS
# (the noisy labels, or the regrouped ones), and relabel_emb, the embeddings of LABELS that
# proposed them. Round 1 proposes from stage 4's embeddings (the pretrained model's). Each
# further round trains SupCon from the pretrained model on the last round's labels
# (exp/<METHOD>_round<k>_..., OUT_round<k>), embeds the training set with it as stage 4 does and
# proposes again from LABELS: a model that never learnt the dropped utterances under their wrong
# label places more of them, and better.
relabel_labels() {
  local from=$1 out=$2 round=1 labels exp
  relabel_emb=$emb
  while true; do
    labels=$out; [ $round = $relabel_rounds ] || labels=${out}_round$round
    # shellcheck disable=SC2086
    steps/relabel_data_dir.py $relabel_opts $relabel_emb $from $labels
    [ $round -lt $relabel_rounds ] || break
    exp=$(method_exp $3_round$round)
    steps/train.sh "${train_opts[@]}" --overrides "$(update_overrides) loss.type=supcon" $purl_conf $labels $exp
    # shellcheck disable=SC2086
    steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --gpus "$gpus" $reliability_embed_opts \
      $exp/models/final.pt $from $exp/embeddings/$reliability_emb
    relabel_emb=$exp/embeddings/$reliability_emb/xvector.scp
    round=$((round + 1))
  done
}

# relabel_changes LABELS: "<changed> <utterances>", the utterances relabelling moved or dropped in
# making LABELS and all of them (its relabel.json)
relabel_changes() {
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["moved"] + r["dropped"], r["utterances"])' \
    $1/relabel.json
}

# retrain_worth_it LABELS: whether relabelling changed at least retrain_min_changed of the labels
retrain_worth_it() {
  relabel_changes $1 | awk -v min="$retrain_min_changed" '{ exit !($1 >= min * $2) }'
}

# update_overrides: the training overrides of every update from the pretrained model
update_overrides() { echo "$overrides $purl_overrides purl.init_checkpoint=$pretrain/models/$update_from"; }

# train_method METHOD
train_method() {
  local update exp changes relabel_emb=${relabel_emb:-}  # regroup_relabel's rounds leave the relabel methods' as it was
  update=$(update_overrides); exp=$(method_exp $1)
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
    relabel_retrain)
             changes=$(relabel_changes $relabelled | sed 's| | of |')
             [ ! -L $exp ] || rm $exp  # relabel's dir, linked by an earlier run (below)
             if retrain_worth_it $relabelled; then
               log "relabel_retrain: relabelling changed $changes labels: stage 3 again, on them"
               steps/train.sh "${train_opts[@]}" --overrides "$overrides" $supcon_conf $relabelled $exp
             else  # relabel's update, in this method's dir
               log "relabel_retrain: relabelling changed $changes labels, under --retrain-min-changed" \
                 "$retrain_min_changed: relabel's update instead of a second pretraining"
               if [[ " $methods " == *" relabel "* ]] && [ ! -e $exp ]; then
                 # the very training of relabel (same labels, config, seed): its dir, trained once
                 ln -s $(basename $(method_exp relabel)) $exp
                 log "relabel_retrain: $exp is relabel's $(method_exp relabel)"
               fi
               steps/train.sh "${train_opts[@]}" --overrides "$update loss.type=supcon" $purl_conf $relabelled $exp
             fi ;;
    relabel_unlearn)
             # shellcheck disable=SC2086
             steps/relabel_data_dir.py $relabel_opts --keep-dropped $relabel_emb $noisy $relabelled_kept
             steps/train.sh "${train_opts[@]}" \
               --overrides "$update purl.unreliable_utts=$relabelled_kept/unreliable_utts" $purl_conf $relabelled_kept $exp ;;
    regroup) steps/regroup_data_dir.py $emb $noisy $regrouped
             steps/train.sh "${train_opts[@]}" --overrides "$update loss.type=supcon" \
               $purl_conf $regrouped $exp ;;
    regroup_relabel)
             steps/regroup_data_dir.py $emb $noisy $regrouped
             relabel_labels $regrouped $regrouped_relabelled regroup_relabel
             steps/train.sh "${train_opts[@]}" --overrides "$update loss.type=supcon" \
               $purl_conf $regrouped_relabelled $exp ;;
    orgate)  steps/train.sh "${train_opts[@]}" \
               --overrides "$update loss.type=supcon orgate.top_k=$orgate_top_k" $purl_conf $noisy $exp ;;
    relabel_purl)
             steps/reliability.py "${reliability_opts[@]}" $relabel_emb $relabelled $pretrain/reliability_relabelled
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
    relabel_retrain) label="$2, relabelled, retrained"
             [ ! -f $relabelled/relabel.json ] || retrain_worth_it $relabelled \
               || label="$2, relabelled (too few changes to retrain)" ;;
    relabel_unlearn) label="$2, relabelled + unlearn dropped" ;;
    regroup) label="$2, regrouped" ;;
    regroup_relabel) label="$2, regrouped and relabelled" ;;
    orgate) label="$2 + OR-Gate (top $orgate_top_k)" ;;
    *) label=$1 ;;
  esac
  echo "$label=$(method_exp $1)"
}
