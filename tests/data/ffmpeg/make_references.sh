#!/usr/bin/env bash
# Makes the references that tests/test_perturb.py and tests/test_audio_av.py
# compare with: audio, and what the ffmpeg program made of it through the pipes
# that purl's in-process decoding replaced, so that the tests need no ffmpeg.
# The files here were made with Debian 12's ffmpeg 5.1.9 (VERSION); PyAV's
# encoder wrote the m4a inputs. Run from anywhere, after . ./path.sh:
#   bash tests/data/ffmpeg/make_references.sh
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -version | head -1 > VERSION

python3 - <<'PY'
import numpy as np
import soundfile as sf

from purl.audio import write_aac


def noisy_chirp(seconds, rate, channels, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 6000 * np.sin(2 * np.pi * 150 * t * (1 + 4 * t))[:, None] + rng.normal(0, 1500, (t.size, channels))
    return x.clip(-32768, 32767).astype(np.int16).squeeze()


sf.write("tone.flac", noisy_chirp(0.4, 16000, 1, 0), 16000)
sf.write("stereo.flac", noisy_chirp(0.4, 16000, 2, 1), 16000)
for rate, channels in [(16000, 1), (44100, 1), (48000, 2), (8000, 2)]:
    write_aac(f"aac_{rate}_{channels}.m4a", noisy_chirp(0.4, rate, channels, 2), rate)
PY

# wav from ffmpeg, stored as flac (lossless, smaller)
to_flac() { python3 -c 'import io, sys, soundfile as sf; x, r = sf.read(io.BytesIO(sys.stdin.buffer.read()), dtype="int16"); sf.write(sys.argv[1], x, r)' "$1"; }
# speed perturbation as the wav.scp pipes of steps/perturb_speed.py ran it before it was done in-process
speed() { ffmpeg -nostdin -loglevel error -i $1 -af asetrate=$2,aresample=16000 -ac 1 -ar 16000 -f wav - | to_flac $3; }
speed tone.flac 14400 tone_sp0.9.flac
speed tone.flac 17600 tone_sp1.1.flac
speed stereo.flac 14400 stereo_sp0.9.flac
for m4a in aac_*.m4a; do  # m4a decoding as stage 0 wrote it in wav.scp before it was done in-process
  ffmpeg -nostdin -loglevel error -i $m4a -ac 1 -ar 16000 -f wav - | to_flac ${m4a%.m4a}.flac
done
