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
  <out-root>/.done                                  the options and seconds of audio, written last

16 kHz 16-bit mono. Then local/prepare_musan.py and local/prepare_rirs.py make
the data dirs the training config's augment section names, as for the real
corpora. The same options give the same files; a rerun with them does nothing,
other options on an existing <out-root> are an error (sources are never mixed).

e.g.: local/make_noise_sources.py noise_sources
"""

import argparse
import math
from pathlib import Path

from purl.entry import run_main
from synthetic.noise import generate_sources


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
    seconds, existed = generate_sources(out, args.seed, args.num_noise, args.num_music, args.num_talkers, args.num_rooms)
    if existed:
        print(f"make_noise_sources.py: {out} is complete; nothing to do")
    else:
        print(f"make_noise_sources.py: wrote {out} ({math.ceil(seconds)} s of audio)")
    return 0


if __name__ == "__main__":
    run_main(main)
