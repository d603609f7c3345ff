"""Usage: bench/bench_embed_cli.py --model MODEL [options]

Times `purl embed MODEL --wav-scp wav.scp` over --files one-second wavs
(generated here, 16 kHz 16-bit noise bursts: the time is the decoding, fbank
and encoder, not what is said) in two environments:

- clean: `env -i` with only PATH (the venv's bin first), HOME and LC_ALL, as a
  user who installed purl runs it (no path.sh: no OMP_WAIT_POLICY, no thread
  variables; the command sets its own);
- path.sh: the same command after `. ./path.sh`, as a recipe runs it.

Issue 25 asks for the two within 20% on a busy machine (81.4 s against
14.8 s before the command set its own thread policy). The runs alternate
(clean, path.sh, clean, ...) so that a change of the machine's load falls on
both. Prints a markdown table.

e.g.
    . ./path.sh
    python bench/bench_embed_cli.py --model egs/speechocean762/exp/benchmark/exp/supcon_tuned_noisy0_seed0
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint or exp dir")
    parser.add_argument("--files", type=int, default=1000, help="one-second wavs to embed")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each environment, alternating")
    parser.add_argument("--venv", default=os.environ.get("PURL_VENV", str(ROOT / ".venv")),
                        help="the Python environment (its bin/ goes first on PATH)")
    parser.add_argument("--extra", default="", help="more options for purl embed, e.g. '--nj 2'")
    return parser


def write_wavs(work: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        path = work / "wav" / f"u{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        envelope = np.abs(np.sin(np.linspace(0, np.pi * rng.integers(2, 6), 16000)))
        samples = (rng.standard_normal(16000) * envelope * 3000).astype(np.int16)
        sf.write(path, samples, 16000, subtype="PCM_16")
        lines.append(f"u{i:05d} {path}\n")
    scp = work / "wav.scp"
    scp.write_text("".join(lines))
    return scp


def run(kind: str, args, scp: Path, out: Path) -> float:
    embed = (f"python -m purl.cli embed {shlex.quote(str(Path(args.model).resolve()))} --wav-scp {scp} "
             f"--out {out} {args.extra}")
    venv_bin = str(Path(args.venv).resolve() / "bin")
    if kind == "clean":
        command = ["env", "-i", f"PATH={venv_bin}:/usr/bin:/bin", f"HOME={os.environ.get('HOME', '/tmp')}",
                   "LC_ALL=C", "bash", "-c", embed]
    else:
        command = ["env", "-i", f"PATH={venv_bin}:/usr/bin:/bin", f"HOME={os.environ.get('HOME', '/tmp')}",
                   f"PURL_VENV={Path(args.venv).resolve()}", "bash", "-c", f". ./path.sh && {embed}"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench_embed_cli.py: {kind}: {proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    args = get_parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scp = write_wavs(work, args.files)
        times: dict[str, list[float]] = {"clean": [], "path.sh": []}
        for r in range(args.repeats):
            for kind in times:
                times[kind].append(run(kind, args, scp, work / f"{kind}.{r}.npy"))
        same = np.allclose(np.load(work / "clean.0.npy"), np.load(work / "path.sh.0.npy"), rtol=1e-5, atol=1e-6)
    load = os.getloadavg()[0]
    print(f"## purl embed over {args.files} one-second files ({os.cpu_count()} cores, load {load:.1f} at the end)\n")
    print("| environment | seconds (each run) | median | files/s |")
    print("|---|---|---:|---:|")
    for kind, values in times.items():
        median = float(np.median(values))
        print(f"| {kind} | {', '.join(f'{v:.1f}' for v in values)} | {median:.1f} | {args.files / median:.0f} |")
    ratio = np.median(times["clean"]) / np.median(times["path.sh"])
    print(f"\nclean / path.sh: {ratio:.2f} (issue 25: within 20%); the same embeddings: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
