"""Usage: bench/bench_models.py [options]

Speed and memory of the speaker encoders in purl.models, on random fbank
batches (default 32 utterances x 300 frames x 80): parameter count, training
throughput (forward + backward + Adam step) and embedding throughput (eval
mode, no grad) in utterances per second, and peak memory.  Prints a markdown
table.  Runs on the CPU with --threads threads, and on CUDA when available.

e.g. (from the repository root)
  .venv/bin/python -m bench.bench_models
  .venv/bin/python -m bench.bench_models --configs ecapa_c256,resnet34 --steps 10
  .venv/bin/python -m bench.bench_models --devices cuda --bf16 --batch-size 128

Throughput is the batch size over the median step time, warm-up steps
excluded: the median ignores the odd step slowed by other jobs on a shared
machine.  The "CPU time" columns divide by the process's CPU time per step
instead (times --threads): roughly what the wall clock would give with the
cores to ourselves.  On a busy machine it is the steadier figure, provided
OMP_WAIT_POLICY=PASSIVE is set (spinning OpenMP threads burn CPU time, and
there they also make the wall clock several times slower), though still low
as other jobs share the caches; on an idle machine it flatters a little, as
it ignores a thread waiting for another.  The header shows the setting.

Each config runs in a fresh process, so that its peak memory is its own: on
CPU the growth of the process's maximum resident set size (embedding measured
first, then training, which also holds gradients and Adam state), on CUDA
torch.cuda.max_memory_allocated.  The training loss is the mean squared
embedding: the real losses cost nothing next to the encoder.

Targets (CPU, 2 threads, 32 x 300): 1.3 x SpeechBrain's models measured on the
development machine, i.e. ecapa_c256 (ref. 26.8 train / 108.6 embed utt/s)
at least 34.8 / 141.2, resnet34 (ref. 19.5 / 54.8) at least 25.4 / 71.2.
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import sys
import time

import torch

from purl.allocator import keep_freed_memory
from purl.models import build_model

# name -> (registry name, constructor arguments)
CONFIGS = {
    "ecapa_c256": ("ecapa_tdnn", {}),
    "ecapa_c512": ("ecapa_tdnn", {"channels": [512] * 4 + [1536]}),
    "ecapa_c1024": ("ecapa_tdnn", {"channels": [1024] * 4 + [3072]}),
    "resnet34": ("resnet34", {"layout": "original"}),  # as egs/voxceleb runs it
    "resnet34_clova": ("resnet34", {}),
    "resnet34_wide": ("resnet34_wide", {}),
}


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--devices", default="cpu,cuda",
                        help="comma-separated; cuda is skipped where not available")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--batch-size", type=int, default=32, help="utterances per batch")
    parser.add_argument("--frames", type=int, default=300, help="frames per utterance")
    parser.add_argument("--feat-dim", type=int, default=80, help="fbank dimension")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (training and embedding each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_steps(step, device, warmup: int, steps: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of ``steps`` calls of ``step()`` after ``warmup`` calls."""
    wall, cpu = [], []
    for i in range(warmup + steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def bench_config(config: str, device_name: str, args) -> dict:
    """Figures of one config on one device; runs in its own process."""
    keep_freed_memory()  # a spawned process: its own allocator settings
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(device_name)
    name, kwargs = CONFIGS[config]
    x = torch.randn(args.batch_size, args.frames, args.feat_dim, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def peak_start() -> float:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        return max_rss_mib()

    def peak_mib(start: float) -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        return max_rss_mib() - start

    base = peak_start()
    model = build_model(name, **kwargs).to(device)

    def embed_step():
        with torch.no_grad(), autocast:
            model(x)

    model.eval()
    embed_time, embed_cpu = timed_steps(embed_step, device, args.warmup, args.steps)
    embed_peak = peak_mib(base)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(x).float().square().mean()
        loss.backward()
        optimizer.step()

    model.train()
    base_train = peak_start() if device.type == "cuda" else base
    train_time, train_cpu = timed_steps(train_step, device, args.warmup, args.steps)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "train": args.batch_size / train_time,
        "embed": args.batch_size / embed_time,
        # what the wall-clock figure would be with the threads to ourselves
        "train_cpu": args.batch_size * args.threads / train_cpu,
        "embed_cpu": args.batch_size * args.threads / embed_cpu,
        "train_mib": peak_mib(base_train),
        "embed_mib": embed_peak,
    }


def main():
    args = get_parser().parse_args()
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"bench_models: unknown config(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    devices = []
    for dev in args.devices.split(","):
        if dev == "cuda" and not torch.cuda.is_available():
            print("bench_models: CUDA not available, skipping it", file=sys.stderr)
        elif dev in ("cpu", "cuda"):
            devices.append(dev)
        else:
            sys.exit(f"bench_models: unknown device {dev!r} (cpu or cuda)")

    print(f"torch {torch.__version__}, batch {args.batch_size} x {args.frames} frames x {args.feat_dim}, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, median of {args.steps} steps "
          f"after {args.warmup} warm-up, CPU threads {args.threads}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")
    print("| config | device | params | train (utt/s) | embed (utt/s) | train, CPU time | embed, CPU time "
          "| train peak (MiB) | embed peak (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    # A fresh process per config: its own memory high-water mark, no warm caches.
    context = multiprocessing.get_context("spawn")
    for device in devices:
        for config in configs:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                r = pool.submit(bench_config, config, device, args).result()
            by_cpu = f"{r['train_cpu']:.1f} | {r['embed_cpu']:.1f}" if device == "cpu" else "- | -"
            print(f"| {config} | {device} | {r['params']:,} | {r['train']:.1f} | {r['embed']:.1f} | {by_cpu} "
                  f"| {r['train_mib']:.0f} | {r['embed_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
