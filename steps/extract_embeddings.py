#!/usr/bin/env python3
"""Usage: extract_embeddings.py [options] <checkpoint> <data-dir> <ark>

One job of stage 6 (steps/extract_embeddings.sh runs nj of them): embeds every
utterance of <data-dir> with the model in <checkpoint> and writes Kaldi
<ark> + .scp (float vectors that kaldiio and Kaldi's copy-vector read), and
last .settings, the record of what they were made from (purl.records). With
--gpus and --job, job n runs on GPU gpus[(n-1) % len(gpus)].

e.g.: python steps/extract_embeddings.py exp/ecapa_supcon/models/final.pt \\
        exp/ecapa_supcon/embeddings/test/split2/1 exp/ecapa_supcon/embeddings/test/xvector.1.ark
"""

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from purl.allocator import keep_freed_memory
from purl.entry import run_main
from purl.evaluate import embed_data_dir
from purl.kaldi_io import save_embeddings
from purl.records import text_digest, write_record
from purl.stages.embeddings import add_embedding_options, checkpoint_for_data, embedding_options_of, embedding_settings
from purl.training.checkpoint import model_of


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data_dir")
    parser.add_argument("ark")
    add_embedding_options(parser)  # --num-crops (0: whole utterances), --crop-frames, --random-crop-seed, --normalise
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids; empty: CPU")
    parser.add_argument("--job", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    gpus = [g for g in args.gpus.split(",") if g]
    device = torch.device("cuda", int(gpus[(args.job - 1) % len(gpus)])) if gpus else torch.device("cpu")
    ark = Path(args.ark)
    record = ark.with_suffix(".settings")
    record.unlink(missing_ok=True)
    # Taken before the model is read: a checkpoint replaced meanwhile makes the record stale, not wrong.
    settings = embedding_settings(text_digest(args.checkpoint), Path(args.data_dir) / "feats.scp",
                                  **embedding_options_of(args))
    model, _ = model_of(checkpoint_for_data(args.checkpoint, args.data_dir), args.checkpoint)
    model.to(device)
    with tqdm(desc="embed", unit="utt", mininterval=10, file=sys.stdout) as bar:
        utts, emb = embed_data_dir(model, args.data_dir, device=device,
                                   num_crops=args.num_crops, crop_frames=args.crop_frames, on_batch=bar.update,
                                   random_crop_seed=args.random_crop_seed, normalise=args.normalise)
    save_embeddings(ark, utts, emb)
    write_record(record, settings)
    print(f"{name}: {len(utts)} embeddings of dimension {emb.shape[1]} on {device}")


if __name__ == "__main__":
    run_main(main)
