"""Usage: torchrun --nproc-per-node N bench/gpu_check.py [options] <config.yaml> <train-data-dir> <exp-dir>

One process of the GPU check (bench/gpu_check.sh runs it at 1 and N processes):
stage 3's trainer for --steps steps of <config.yaml> on <train-data-dir> (DDP
over NCCL on CUDA, gloo on the CPU), then prints one line: the model (and its
layout), train.amp, processes, device, steps, utterances/s over all processes
(the median of the train.csv windows after the first, so start-up and warm-up
do not count) and the peak memory of each process
(torch.cuda.max_memory_allocated on CUDA; the maximum resident set on the CPU).

e.g.: torchrun --standalone --nproc-per-node 4 bench/gpu_check.py --steps 300 \\
        egs/voxceleb/conf/paper/ecapa_supcon.yaml /tmp/gpu_check/data/train /tmp/gpu_check/exp_4
"""

import argparse
import csv
import resource
import statistics
import sys

import torch
import torch.distributed as dist

from purl.config import load_config
from purl.stages.exp_layout import TrainingOutputs
from purl.training.loop import Trainer


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("data_dir")
    parser.add_argument("exp_dir")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-every", type=int, default=25, help="steps per utterances/s window")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    config = load_config(args.config, args.set)
    batch = config["data"]["speakers_per_batch"] * config["data"]["utts_per_speaker"]
    # one epoch of exactly --steps steps; nothing saved within it
    overrides = [f"data.samples_per_epoch={args.steps * batch}", "optim.epochs=1",
                 f"train.log_every={args.log_every}", "train.save_every_steps=0"]
    config = load_config(args.config, args.set + overrides)
    trainer = Trainer(config, args.data_dir, TrainingOutputs(args.exp_dir), show_progress=False)
    try:
        trainer.train(stop_at_step=args.steps)
        device = trainer.dist.device
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        peaks = [peak]
        if trainer.dist.world_size > 1:
            peaks = [None] * trainer.dist.world_size
            dist.all_gather_object(peaks, peak)
        if trainer.dist.main:
            with open(trainer.outputs.steps_csv) as f:
                rates = [float(r["utt_per_s"]) for r in csv.DictReader(f)][1:]
            rate = f"{statistics.median(rates):.1f}" if rates else "n/a (raise --steps)"
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
            model = config["model"]["name"] + "".join(f" ({v})" for k, v in config["model"]["args"].items()
                                                      if k == "layout")
            print(f"gpu_check: {model}, train.amp {config['train']['amp']}: "
                  f"{trainer.dist.world_size} process(es) on {name}, {args.steps} steps of {batch} "
                  f"utterances: {rate} utterances/s; peak memory per process (MiB): "
                  f"{', '.join(f'{p:.0f}' for p in peaks)}", flush=True)
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
