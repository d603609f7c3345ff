"""Usage: bench/bench_models.py [options]

Speed and memory of the speaker encoders in purl.models, on random fbank
batches (default 32 utterances x 300 frames x 80): parameter count, training
throughput (forward + backward + Adam step) and embedding throughput (eval
mode, no grad) in utterances per second, and peak memory.  Prints a markdown
table.  Runs on the CPU with --threads threads, and on CUDA when available;
with bf16 autocast (--bf16) and torch.compile (--compile), or every
combination of the two (--grid: the rows without compile first).

--original DIR adds the original PURL work's thin ResNet-34 beside ours, in
the same run and under the same settings: a checkout of
github.com/jimmy1016-coder/PURL outside this project (git clone
https://github.com/jimmy1016-coder/PURL DIR), whose src/modules/thin_resnet
(clova's ResNetSE) is run as its models.ResNetEncoder runs it, on
(batch, 1, frames, 80).  Before the timing, our resnet34 (layout original)
is given its weights (purl.convert_original) and both embed one batch: the
line printed says by how much they differ (the same function: ~1e-7).

e.g. (from the repository root)
  .venv/bin/python -m bench.bench_models
  .venv/bin/python -m bench.bench_models --configs ecapa_c256,resnet34 --steps 10
  .venv/bin/python -m bench.bench_models --devices cuda --bf16 --batch-size 128
  .venv/bin/python -m bench.bench_models --configs resnet34,resnet34_clova --original /tmp/PURL-original
  .venv/bin/python -m bench.bench_models --devices cuda --grid --batch-size 128   # as bench/gpu_check.sh

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
embedding: the real losses cost nothing next to the encoder.  "warm-up (s)"
is the wall time of the untimed steps (embedding and training): with
--compile mostly the compilation of both graphs.  A row whose set-up or
steps fail says so and the others go on.

Targets (CPU, 2 threads, 32 x 300): 1.3 x SpeechBrain's models measured on the
development machine, i.e. ecapa_c256 (ref. 26.8 train / 108.6 embed utt/s)
at least 34.8 / 141.2, resnet34 (ref. 19.5 / 54.8) at least 25.4 / 71.2.
"""

import argparse
import concurrent.futures
import contextlib
import importlib
import io
import multiprocessing
import os
import resource
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn as nn

from purl.allocator import keep_freed_memory
from purl.convert_original import convert_state_dict, resnet_names
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
# The original work's thin ResNet-34 (its configs/supcon_resnet34.yaml), from --original DIR.
ORIGINAL = "resnet34_original_repo"
ORIGINAL_ARGS = {"layers": [3, 4, 6, 3], "num_filters": [16, 32, 64, 128], "nOut": 192, "encoder_type": "SAP"}


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs",
                        help=f"comma-separated, from: {', '.join(CONFIGS)}, {ORIGINAL} (with --original); "
                             "default: all (the original's with --original)")
    parser.add_argument("--devices", default="cpu,cuda",
                        help="comma-separated; cuda is skipped where not available")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--batch-size", type=int, default=32, help="utterances per batch")
    parser.add_argument("--frames", type=int, default=300, help="frames per utterance")
    parser.add_argument("--feat-dim", type=int, default=80, help="fbank dimension")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (training and embedding each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (default mode)")
    parser.add_argument("--grid", action="store_true",
                        help="every combination of --bf16 and --compile, off and on (the rows without compile first)")
    parser.add_argument("--original", metavar="DIR",
                        help="a checkout of github.com/jimmy1016-coder/PURL: adds its thin ResNet-34 as " + ORIGINAL)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_steps(step, device, warmup: int, steps: int) -> tuple[float, float, float]:
    """Median (wall, process CPU) seconds of ``steps`` calls of ``step()`` after
    ``warmup`` calls, and the wall seconds of those ``warmup`` calls."""
    wall, cpu = [], []
    start_all = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            warmup_seconds = time.perf_counter() - start_all
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), warmup_seconds


class OriginalEncoder(nn.Module):
    """The original's ResNetSE as its models.ResNetEncoder feeds it:
    (batch, frames, feats) -> ResNetSE on (batch, 1, frames, feats) -> (batch, nOut)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.unsqueeze(1))


def original_resnet(repo: str) -> OriginalEncoder:
    """The original work's thin ResNet-34 from its checkout ``repo``, imported as
    its own code imports it (``modules.thin_resnet`` of its src/), without
    putting src/ on sys.path: a package ``modules`` whose path is src/modules."""
    root = Path(repo) / "src" / "modules"
    if not (root / "thin_resnet" / "model.py").is_file():
        raise SystemExit(f"bench_models: --original {repo}: no src/modules/thin_resnet/model.py there "
                         "(give a checkout of github.com/jimmy1016-coder/PURL)")
    package = sys.modules.get("modules")
    if package is None:
        package = types.ModuleType("modules")
        package.__path__ = [str(root)]
        sys.modules["modules"] = package
    elif list(getattr(package, "__path__", [])) != [str(root)]:
        raise SystemExit(f"bench_models: another package 'modules' is imported already ({package!r})")
    resnet_se = importlib.import_module("modules.thin_resnet").ResNetSE
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its embedding size
        return OriginalEncoder(resnet_se(**ORIGINAL_ARGS))


def original_parity(repo: str) -> float:
    """Largest difference of our resnet34 (layout original) with the original's
    weights from the original's model, one batch, float32, eval mode."""
    torch.manual_seed(0)
    theirs = original_resnet(repo).eval()
    ours = build_model("resnet34", layout="original").eval()
    state = theirs.model.state_dict()
    ours.load_state_dict(convert_state_dict(state, ours, resnet_names(state), f"{repo}: ResNetSE"))
    x = torch.randn(4, 200, 80)
    with torch.no_grad():
        return (ours(x) - theirs(x)).abs().max().item()


def build(config: str, args) -> nn.Module:
    if config == ORIGINAL:
        return original_resnet(args.original)
    name, kwargs = CONFIGS[config]
    return build_model(name, **kwargs)


def bench_config(config: str, device_name: str, args, bf16: bool, compiled: bool) -> dict:
    """Metrics of one config on one device; runs in its own process."""
    keep_freed_memory()  # a spawned process: its own allocator settings
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(device_name)
    x = torch.randn(args.batch_size, args.frames, args.feat_dim, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def peak_start() -> float:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        return max_rss_mib()

    def peak_mib(start: float) -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        return max_rss_mib() - start

    base = peak_start()
    model = build(config, args).to(device)
    params = sum(p.numel() for p in model.parameters())
    if compiled:
        model = torch.compile(model)

    def embed_step():
        with torch.no_grad(), autocast:
            model(x)

    model.eval()
    embed_time, embed_cpu, embed_warmup = timed_steps(embed_step, device, args.warmup, args.steps)
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
    train_time, train_cpu, train_warmup = timed_steps(train_step, device, args.warmup, args.steps)
    return {
        "params": params,
        "warmup": embed_warmup + train_warmup,
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
    known = list(CONFIGS) + ([ORIGINAL] if args.original else [])
    configs = args.configs.split(",") if args.configs else known
    unknown = [c for c in configs if c not in known]
    if unknown:
        hint = f" ({ORIGINAL} needs --original DIR)" if ORIGINAL in unknown else ""
        sys.exit(f"bench_models: unknown config(s) {', '.join(unknown)}; known: {', '.join(known)}{hint}")
    devices = []
    for dev in args.devices.split(","):
        if dev == "cuda" and not torch.cuda.is_available():
            print("bench_models: CUDA not available, skipping it", file=sys.stderr)
        elif dev in ("cpu", "cuda"):
            devices.append(dev)
        else:
            sys.exit(f"bench_models: unknown device {dev!r} (cpu or cuda)")
    settings = [(False, False), (True, False), (False, True), (True, True)] if args.grid else [(args.bf16, args.compile)]

    print(f"torch {torch.__version__}, batch {args.batch_size} x {args.frames} frames x {args.feat_dim}, "
          f"median of {args.steps} steps after {args.warmup} warm-up, CPU threads {args.threads}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
          + "".join(f", {torch.cuda.get_device_name(0)}" for d in devices if d == "cuda") + "\n")
    if args.original:
        diff = original_parity(args.original)
        verdict = "the same function" if diff < 1e-4 else "**not the same function**"
        print(f"{ORIGINAL}: clova's ResNetSE of {args.original}; our resnet34 (layout original) with its weights "
              f"differs by at most {diff:.1e} on one batch (float32, eval): {verdict}\n")
    print("| config | device | bf16 | compile | params | train (utt/s) | embed (utt/s) | train, CPU time "
          "| embed, CPU time | warm-up (s) | train peak (MiB) | embed peak (MiB) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    # A fresh process per config: its own memory high-water mark, no warm caches.
    context = multiprocessing.get_context("spawn")
    for device in devices:
        for bf16, compiled in settings:
            for config in configs:
                row = f"| {config} | {device} | {'on' if bf16 else 'off'} | {'on' if compiled else 'off'} |"
                try:
                    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                        r = pool.submit(bench_config, config, device, args, bf16, compiled).result()
                except Exception as e:  # one failing setting (a compile error, out of memory) ends its row only
                    message = " ".join(str(e).split())[:200]
                    print(f"{row} failed: {type(e).__name__}: {message} ||||||||", flush=True)
                    continue
                by_cpu = f"{r['train_cpu']:.1f} | {r['embed_cpu']:.1f}" if device == "cpu" else "- | -"
                print(f"{row} {r['params']:,} | {r['train']:.1f} | {r['embed']:.1f} | {by_cpu} | {r['warmup']:.1f} "
                      f"| {r['train_mib']:.0f} | {r['embed_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
