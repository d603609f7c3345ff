"""Long audio in bounded memory: windows for the encoder, blocks for the fbank
and for Kaldi compression, with normal utterances as before (bench/bench_long_audio.py
measures a 2-hour file)."""

from __future__ import annotations

import io

import kaldiio
import kaldiio.matio
import numpy as np
import torch

import purl
import purl.kaldi_io
from purl.data.datadir import read_kv
from purl.embed import embed_utterances, window_starts
from purl.features import compute_fbank, fbank_options
from purl.kaldi_io import compress_speech_feature, load_matrix, read_compressed
from purl.stages.fbank import make_fbank_job
from tests.conftest import write_tone
from tests.test_use_model import tiny_exp


def test_fbank_in_blocks_equals_one_pass():
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(16000 * 3 + 123) * 3000).astype(np.float32)
    whole = compute_fbank(samples, fbank_options())
    blocks = compute_fbank(samples, fbank_options(), block_frames=37)
    assert whole.shape == (299, 80)
    np.testing.assert_array_equal(blocks, whole)


def test_compression_a_few_columns_at_a_time_keeps_kaldis_bytes_and_values(tmp_path, monkeypatch):
    feats = np.random.default_rng(1).standard_normal((701, 80)).astype(np.float32) * 3 + 5
    buffer = io.BytesIO()
    kaldiio.matio.write_array(buffer, feats, compression_method=2)
    monkeypatch.setattr(purl.kaldi_io, "_BLOCK_VALUES", 701 * 3)  # three columns at a time
    data = compress_speech_feature(feats)
    assert data == buffer.getvalue()
    expected = np.asarray(kaldiio.matio.read_kaldi(io.BytesIO(data)), dtype=np.float32)
    np.testing.assert_array_equal(read_compressed(io.BytesIO(data)), expected)
    ark = tmp_path / "a.ark"
    ark.write_bytes(b"utt " + data)
    np.testing.assert_array_equal(load_matrix(f"{ark}:4"), expected)
    assert np.array_equal(load_matrix(f"{ark}:4"), np.asarray(kaldiio.load_mat(f"{ark}:4"), dtype=np.float32))


def test_windows_cover_the_utterance_evenly_with_the_overlap():
    assert window_starts(100, 200) == [0]
    assert window_starts(200, 200) == [0]
    starts = window_starts(1000, 200, overlap=30)
    assert starts[0] == 0 and starts[-1] == 800
    assert all(0 < b - a <= 170 for a, b in zip(starts, starts[1:]))
    assert len(window_starts(1000, 200, overlap=30)) == len(starts) == 6  # the fewest: 5 steps of at most 170


class FramesSeen(torch.nn.Module):
    """Wraps an encoder and records the frames of each pass."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.frames = encoder, []

    def forward(self, x):
        self.frames.append(x.shape[1])
        return self.encoder(x)


def test_a_long_utterance_is_the_mean_of_its_windows_and_the_encoder_sees_one_window_at_most(tmp_path, tiny_config):
    model = purl.load_model(tiny_exp(tmp_path, tiny_config))
    wav = {"spk0-long": str(write_tone(tmp_path / "long.wav", seconds=9)),
           "spk0-short": str(write_tone(tmp_path / "short.wav", seconds=2, seed=1))}
    make_fbank_job(wav, tmp_path / "raw_fbank.1.ark")
    feats = read_kv(tmp_path / "raw_fbank.1.scp", check_sorted=False)
    frames = {u: int(n) for u, n in read_kv(tmp_path / "raw_fbank.1.utt2num_frames", check_sorted=False).items()}
    assert frames["spk0-long"] == 898
    entries, lengths = [feats[u] for u in wav], [frames[u] for u in wav]
    before = embed_utterances(model.encoder, entries, lengths)  # the default cap: both whole
    seen = FramesSeen(model.encoder)
    windowed = embed_utterances(seen, entries, lengths, max_frames=300, max_batch_frames=600)
    assert max(seen.frames) <= 300
    np.testing.assert_array_equal(windowed[1], before[1])  # under the cap: as before, bit for bit
    whole = purl.data.dataset.load_features(feats["spk0-long"])
    starts = window_starts(898, 300)
    assert len(starts) == 4
    with torch.no_grad():
        expected = np.mean([model.encoder(torch.from_numpy(whole[s:s + 300])[None])[0].numpy() for s in starts], axis=0)
    np.testing.assert_allclose(windowed[0], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(windowed[0], before[0], rtol=1e-3)

    # purl embed (purl.load_model) embeds a long file as stage 6 does, one at a time or in batches
    model.max_frames = 300
    model.encoder = seen
    seen.frames.clear()
    ours = model.embed(wav["spk0-long"])
    assert max(seen.frames) <= 300
    np.testing.assert_allclose(ours, windowed[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.embed_many(list(wav.values())), windowed, rtol=1e-5, atol=1e-6)
