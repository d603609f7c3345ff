"""Any number of training processes: unequal shares of the global batch, the loss
over the gathered batch, the gradient of the single-process computation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from purl.data.dataset import SpeakerBatchSampler
from tests.conftest import ROOT, recipe_env


def test_sampler_splits_300_pairs_over_any_process_count_in_shares_differing_by_at_most_one():
    labels = np.arange(400).repeat(2)
    full = next(iter(SpeakerBatchSampler(labels, 300, 2, 600, seed=3)))
    for world in range(1, 9):
        shares = [next(iter(SpeakerBatchSampler(labels, 300, 2, 600, seed=3, rank=r, world_size=world)))
                  for r in range(world)]
        assert sum(shares, []) == full
        sizes = SpeakerBatchSampler(labels, 300, 2, 600, seed=3, world_size=world).utts_per_rank()
        assert [len(s) for s in shares] == sizes and max(sizes) - min(sizes) <= 2


def test_more_processes_than_speakers_per_batch_is_an_error():
    with pytest.raises(ValueError, match="speakers_per_batch=2 is fewer than the 3 training processes"):
        SpeakerBatchSampler(np.arange(4).repeat(2), 2, 2, 8, seed=0, world_size=3)


@pytest.mark.parametrize("processes", [1, 3, 8])
def test_loss_and_gradients_over_uneven_shares_equal_one_process(tmp_path, processes):
    """10 pairs over 1, 3 (3+3+4 pairs) and 8 (1 or 2 pairs each) gloo processes."""
    out = tmp_path / "diff.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
         str(ROOT / "tests" / "ddp_gather_check.py"), str(out)],
        capture_output=True, text=True, env={**recipe_env(), "OMP_NUM_THREADS": "1"}, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loss_diff, grad_diff, world, loss = out.read_text().split()
    assert int(world) == processes and float(loss) > 0
    # float32: the gathered sums run in another order
    assert float(loss_diff) < 1e-5 and float(grad_diff) < 1e-5
