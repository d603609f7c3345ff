#!/usr/bin/env python3
"""Usage: python bench/bench_long_audio.py [--seconds 7200] [--dir /tmp/long_audio]   (after . ./path.sh)

Peak memory (maximum resident set size, /usr/bin/time -v) of embedding one
long 16 kHz wav: ``purl embed`` on the file, and stage 6's job
(steps/extract_embeddings.py) on a data dir holding it, with stage 1's
features (steps/make_fbank.sh) made first; stage 1's peak is printed too.
The model is randomly initialised from --config (default: the mini recipe's
0.3M-parameter ECAPA-TDNN). Prints a markdown table.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from purl.config import load_config
from purl.data.datadir import write_kv
from purl.models import build_model
from purl.training.checkpoint import save_atomic

ROOT = Path(__file__).resolve().parent.parent


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=7200.0, help="length of the wav")
    parser.add_argument("--dir", default="/tmp/purl_long_audio", help="work dir (the wav is kept for reruns)")
    parser.add_argument("--config", default=str(ROOT / "egs/mini/conf/tuned/supcon.yaml"))
    return parser


def write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    """Noise with a slowly moving tone, written a minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        left, t0 = int(seconds * rate), 0
        while left:
            n = min(left, 60 * rate)
            t = (t0 + np.arange(n)) / rate
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * np.sin(t / 7)) * t) + 0.05 * rng.standard_normal(n)
            f.write((x * 32767 * 0.5).astype(np.int16))
            left, t0 = left - n, t0 + n


def peak_rss(command: list[str]) -> float:
    """GiB at the command's peak; stops on its failure."""
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{run.stdout[-2000:]}{run.stderr[-4000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return kib / 2**20


def main() -> None:
    args = get_parser().parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    wav = work / f"long_{int(args.seconds)}s.wav"
    if not wav.is_file():
        write_wav(wav, args.seconds)
    config = load_config(args.config)
    torch.manual_seed(0)
    model = build_model(config["model"]["name"], **config["model"]["args"])
    params = sum(p.numel() for p in model.parameters())
    final = work / "final.pt"
    save_atomic({"model": model.state_dict(), "config": config}, final)
    data = work / "data"
    data.mkdir(exist_ok=True)
    write_kv(data / "wav.scp", {"spk1-long": str(wav)})
    write_kv(data / "utt2spk", {"spk1-long": "spk1"})
    write_kv(data / "spk2utt", {"spk1": "spk1-long"})
    rows = [("purl embed", peak_rss([sys.executable, "-m", "purl.cli", "embed", str(final), str(wav),
                                     "--out", str(work / "embed.npy")]))]
    rows.append(("stage 1 (make_fbank.sh --nj 1)",
                 peak_rss(["bash", str(ROOT / "steps/make_fbank.sh"), "--nj", "1", str(data)])))
    rows.append(("stage 6 job (extract_embeddings.py)",
                 peak_rss([sys.executable, str(ROOT / "steps/extract_embeddings.py"), str(final), str(data),
                           str(work / "xvector.1.ark")])))
    print(f"{args.seconds:g} s of 16 kHz audio, {args.config} ({params / 1e6:.2f}M parameters)\n")
    print("| command | peak RSS (GiB) |\n|---|---|")
    for name, gib in rows:
        print(f"| {name} | {gib:.2f} |")


if __name__ == "__main__":
    main()
