"""SupCon against a direct double loop; PURL losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from purl.losses import PurlLoss, SupConLoss


def supcon_loop(emb, labels, t, drop=(), keep_only=None):
    """SupCon by its definition; pairs in drop are not positives, and with keep_only only those are."""
    z = F.normalize(emb.double(), dim=1)
    n = len(labels)
    per_anchor = []
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]
               and (tuple(sorted((i, p))) not in drop) and (keep_only is None or tuple(sorted((i, p))) in keep_only)]
        if not pos:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(n) if a != i)
        per_anchor.append(-sum(float(z[i] @ z[p]) / t - math.log(denominator) for p in pos) / len(pos))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]])
def test_supcon_equals_a_direct_double_loop(labels):
    torch.manual_seed(0)
    emb = torch.randn(len(labels), 8)
    loss, figures = SupConLoss(temperature=0.1)(emb, torch.tensor(labels))
    assert loss.item() == pytest.approx(supcon_loop(emb, labels, 0.1), rel=1e-5)
    assert figures["temperature"] == pytest.approx(0.1)


def test_supcon_is_stable_for_large_logits():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]) * 1e4
    loss, _ = SupConLoss(temperature=0.01)(emb, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)


def test_temperature_is_learnable_and_clamped():
    loss_fn = SupConLoss(temperature=0.1)
    emb = torch.randn(6, 4, requires_grad=True)
    loss, _ = loss_fn(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
    loss.backward()
    assert loss_fn.temperature.log_t.grad is not None
    with torch.no_grad():
        loss_fn.temperature.log_t.fill_(math.log(1e-5))
    assert loss_fn.temperature().item() == pytest.approx(0.01)


def pair_weights(n, pairs):
    w = torch.ones(n, n)
    for (i, j), value in pairs.items():
        w[i, j] = w[j, i] = value
    return w


def test_soft_purl_with_all_weights_one_equals_supcon():
    torch.manual_seed(1)
    emb, labels = torch.randn(8, 5), torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])
    supcon, _ = SupConLoss()(emb, labels)
    purl, figures = PurlLoss("soft")(emb, labels, torch.ones(8, 8))
    assert purl.item() == pytest.approx(supcon.item(), rel=1e-6)
    assert figures["n_noisy"] == 0 and figures["n_clean"] == 1 + 3 + 1


def hand_case():
    """Speaker 0 has utterances 0, 1, 2; the pair (0, 2) is unreliable (w = 0.2)."""
    emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    w = pair_weights(4, {(0, 1): 0.9, (0, 2): 0.2, (1, 2): 0.7})
    cos = F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T
    reliable_supcon = supcon_loop(emb, labels, 0.1, drop={(0, 2)})
    return emb, labels, w, cos, reliable_supcon


def test_soft_purl_against_hand_computed_value():
    emb, labels, w, cos, reliable_supcon = hand_case()
    # all three positive pairs, each weighted by 1 - w
    unlearn = ((1 - 0.9) * cos[0, 1] + (1 - 0.2) * cos[0, 2] + (1 - 0.7) * cos[1, 2]) / 3
    loss, figures = PurlLoss("soft", alpha=0.5)(emb, labels, w)
    assert loss.item() == pytest.approx(reliable_supcon + 0.5 * unlearn.item(), rel=1e-5)
    assert (figures["n_clean"], figures["n_noisy"]) == (2, 1)
    assert figures["clean_ratio"] == pytest.approx(2 / 3)


def test_hard_purl_against_hand_computed_value():
    emb, labels, w, cos, reliable_supcon = hand_case()
    loss, _ = PurlLoss("hard", alpha=0.5)(emb, labels, w)
    assert loss.item() == pytest.approx(reliable_supcon + 0.5 * cos[0, 2].item(), rel=1e-5)


def test_ascent_purl_against_hand_computed_value():
    emb, labels, w, _, reliable_supcon = hand_case()
    noisy_supcon = supcon_loop(emb, labels, 0.1, keep_only={(0, 2)})
    loss, _ = PurlLoss("ascent", alpha=0.5)(emb, labels, w)
    assert loss.item() == pytest.approx(reliable_supcon - 0.5 * noisy_supcon, rel=1e-5)


def test_purl_without_pair_weights_is_an_error():
    with pytest.raises(ValueError, match="needs pair_weights"):
        PurlLoss("soft")(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
