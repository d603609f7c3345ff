#!/usr/bin/env python3
"""Usage: make_noise_sources.py [--seed N] <out-root>

Generated stand-ins for MUSAN and RIRS_NOISES, in their real layouts, for the
augmentation of the small recipes (MUSAN cannot be downloaded everywhere, and
the point here is the mechanism and its cost, not MUSAN's exact sounds):

  <out-root>/musan/noise/generated/noise-NNNN.wav   white, pink, brown, band and
                                                    modulated noise, mains hum
  <out-root>/musan/music/generated/music-NNNN.wav   harmonic notes, chords, clicks
  <out-root>/musan/speech/synthetic/speech-NNNN.wav synthetic voices (the mini
                                                    corpus's generator, speakers
                                                    of another seed), for babble
  <out-root>/RIRS_NOISES/simulated_rirs/{smallroom,mediumroom}/RoomNNN/RoomNNN-00001.wav
                                                    direct path, sparse early
                                                    reflections, exponential tail
                                                    (RT60 0.2-0.5 s / 0.4-0.9 s)
  <out-root>/.done                                  the options, written last

16 kHz 16-bit mono. Then local/prepare_musan.py and local/prepare_rirs.py make
the data dirs the training config's augment section names, as for the real
corpora. The same options give the same files; a rerun with them does nothing.

e.g.: local/make_noise_sources.py noise_sources
"""

import argparse
import json
import math
import sys
from pathlib import Path

import soundfile as sf

from purl.entry import run_main
from purl.fileio import atomic_path
from synthetic.noise import FORMAT_VERSION, make_sources


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_root")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-noise", type=int, default=40)
    parser.add_argument("--num-music", type=int, default=20)
    parser.add_argument("--num-talkers", type=int, default=40)
    parser.add_argument("--num-rooms", type=int, default=20, help="per room size")
    args = parser.parse_args()
    out = Path(args.out_root)
    options = {k: v for k, v in vars(args).items() if k != "out_root"} | {"format_version": FORMAT_VERSION}
    done = out / ".done"
    if done.is_file():
        made_with = json.loads(done.read_text())
        if made_with == options:
            print(f"make_noise_sources.py: {out} is complete; nothing to do")
            return 0
        print(f"make_noise_sources.py: {out} was made with {made_with}, not {options}; "
              f"remove it or choose another <out-root>", file=sys.stderr)
        return 1
    make_sources(out, args.seed, args.num_noise, args.num_music, args.num_talkers, args.num_rooms)
    with atomic_path(done) as tmp:
        Path(tmp).write_text(json.dumps(options))
    seconds = sum(sf.info(str(p)).duration for p in out.rglob("*.wav"))
    print(f"make_noise_sources.py: wrote {out} ({math.ceil(seconds)} s of audio)")
    return 0


if __name__ == "__main__":
    run_main(main)
