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
    loss, metrics = SupConLoss(temperature=0.1)(emb, torch.tensor(labels))
    assert loss.item() == pytest.approx(supcon_loop(emb, labels, 0.1), rel=1e-5)
    assert metrics["temperature"] == pytest.approx(0.1)


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
    emb, labels = torch.randn(9, 5), torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3])
    supcon, _ = SupConLoss()(emb, labels)
    purl, metrics = PurlLoss("soft")(emb, labels, torch.ones(9, 9))
    assert purl.item() == pytest.approx(supcon.item(), rel=1e-6)
    assert metrics["n_noisy"] == 0 and metrics["n_clean"] == 1 + 3 + 1 + 1


def hand_case():
    """Speaker 0 has utterances 0, 1, 2; the pair (0, 2) is unreliable (w = 0.2).
    The hand-computed values keep every sample as a negative
    (keep_unreliable_negatives=True)."""
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
    loss, metrics = PurlLoss("soft", alpha=0.5, keep_unreliable_negatives=True)(emb, labels, w)
    assert loss.item() == pytest.approx(reliable_supcon + 0.5 * unlearn.item(), rel=1e-5)
    assert (metrics["n_clean"], metrics["n_noisy"]) == (2, 1)
    assert metrics["clean_ratio"] == pytest.approx(2 / 3)


def test_hard_purl_against_hand_computed_value():
    emb, labels, w, cos, reliable_supcon = hand_case()
    loss, _ = PurlLoss("hard", alpha=0.5, keep_unreliable_negatives=True)(emb, labels, w)
    assert loss.item() == pytest.approx(reliable_supcon + 0.5 * cos[0, 2].item(), rel=1e-5)


def test_ascent_purl_against_hand_computed_value():
    emb, labels, w, _, reliable_supcon = hand_case()
    noisy_supcon = supcon_loop(emb, labels, 0.1, keep_only={(0, 2)})
    loss, _ = PurlLoss("ascent", alpha=0.5, keep_unreliable_negatives=True)(emb, labels, w)
    assert loss.item() == pytest.approx(reliable_supcon - 0.5 * noisy_supcon, rel=1e-5)


def test_purl_without_pair_weights_is_an_error():
    with pytest.raises(ValueError, match="needs pair_weights"):
        PurlLoss("soft")(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))


# -- the original work's arithmetic (github.com/jimmy1016-coder/PURL, commit 2f3abb5),
# transcribed: src/losses.py SupConLoss.forward and src/trainers.py NCUTrainer
# ._training_step_{soft,hard,ascent}. A batch there is B rows (pairs): emb_a[i],
# emb_b[i] of speaker labels[i], with one reliability p_clean[i] per row.

def original_supcon(emb_a, emb_b, labels, t):
    batch = emb_a.shape[0]
    mask = torch.eq(labels.view(-1, 1), labels.view(1, -1)).float()
    contrast = F.normalize(torch.cat([emb_a, emb_b], dim=0), dim=1)
    anchor_dot_contrast = contrast @ contrast.T / t
    logits = anchor_dot_contrast - anchor_dot_contrast.max(dim=1, keepdim=True)[0]
    logits = logits.clamp(-50.0, 50.0)
    mask = mask.repeat(2, 2)
    logits_mask = torch.ones_like(mask)
    logits_mask[range(2 * batch), range(2 * batch)] = 0
    mask = mask * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True).clamp(min=1e-8))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1).clamp(min=1e-8)
    return (-mean_log_prob_pos).view(2, batch).mean()


def original_purl(kind, emb_a, emb_b, labels, p_clean, alpha=0.5, threshold=0.5, t=0.1):
    clean = p_clean > threshold
    noisy = ~clean
    loss = torch.tensor(0.0)
    if clean.sum() > 1:
        loss = loss + original_supcon(emb_a[clean], emb_b[clean], labels[clean], t)
    cos = (F.normalize(emb_a, dim=1) * F.normalize(emb_b, dim=1)).sum(1)
    if kind == "soft":
        loss = loss + alpha * ((1.0 - p_clean) * cos).mean()
    elif kind == "hard" and noisy.sum() > 0:
        loss = loss + alpha * cos[noisy].mean()
    elif kind == "ascent" and noisy.sum() > 1:
        loss = loss - alpha * original_supcon(emb_a[noisy], emb_b[noisy], labels[noisy], t)
    return loss


def as_our_batch(emb_a, emb_b, labels, p_clean):
    """The same rows as this project's batch: speakers' utterances side by side,
    w of the pair (2i, 2i+1) = p_clean[i]."""
    rows = len(labels)
    emb = torch.stack([emb_a, emb_b], dim=1).reshape(2 * rows, -1)
    w = torch.ones(2 * rows, 2 * rows)
    w[torch.arange(0, 2 * rows, 2), torch.arange(1, 2 * rows, 2)] = p_clean
    w[torch.arange(1, 2 * rows, 2), torch.arange(0, 2 * rows, 2)] = p_clean
    return emb, labels.repeat_interleave(2), w


def eight_pairs():
    """8 pairs of 8 speakers, rows 2, 4 and 6 unreliable (p_clean <= 0.5)."""
    generator = torch.Generator().manual_seed(7)
    emb_a, emb_b = torch.randn(8, 16, generator=generator), torch.randn(8, 16, generator=generator)
    emb_b[:5] += 1.5 * emb_a[:5]  # some pairs agree, as a trained model's would
    p_clean = torch.tensor([0.97, 0.81, 0.30, 0.95, 0.05, 0.62, 0.50, 0.99])
    return emb_a, emb_b, torch.arange(8), p_clean


@pytest.mark.parametrize("kind", ["soft", "hard", "ascent"])
def test_purl_losses_equal_the_original_formulas_on_eight_pairs_with_three_unreliable(kind):
    emb_a, emb_b, labels, p_clean = eight_pairs()
    expected = original_purl(kind, emb_a, emb_b, labels, p_clean).item()
    loss, metrics = PurlLoss(kind, alpha=0.5, threshold=0.5)(*as_our_batch(emb_a, emb_b, labels, p_clean))
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert (metrics["n_clean"], metrics["n_noisy"]) == (5, 3)


def test_keeping_unreliable_pairs_as_negatives_differs_from_the_original():
    emb_a, emb_b, labels, p_clean = eight_pairs()
    batch = as_our_batch(emb_a, emb_b, labels, p_clean)
    kept, _ = PurlLoss("soft", keep_unreliable_negatives=True)(*batch)
    # by definition: SupCon over all 16 samples with the 5 reliable pairs as positives
    dropped = {(2 * i, 2 * i + 1) for i in (2, 4, 6)}
    unlearn = ((1 - p_clean) * (F.normalize(emb_a, dim=1) * F.normalize(emb_b, dim=1)).sum(1)).mean()
    expected = supcon_loop(batch[0], batch[1].tolist(), 0.1, drop=dropped) + 0.5 * unlearn.item()
    assert kept.item() == pytest.approx(expected, rel=1e-5)
    assert kept.item() > original_purl("soft", emb_a, emb_b, labels, p_clean).item() + 0.1


@pytest.mark.parametrize("kind", ["soft", "hard", "ascent"])
def test_purl_losses_skip_supcon_when_at_most_one_pair_is_reliable(kind):
    """The original adds no SupCon term with one reliable row (and no ascent term
    with one unreliable row); here a lone pair's SupCon is 0, which is the same."""
    emb_a, emb_b, labels, _ = eight_pairs()
    p_clean = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3])
    expected = original_purl(kind, emb_a, emb_b, labels, p_clean).item()
    loss, metrics = PurlLoss(kind)(*as_our_batch(emb_a, emb_b, labels, p_clean))
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert metrics["supcon"] == pytest.approx(0.0, abs=1e-7)
    p_clean = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1])
    loss, _ = PurlLoss(kind)(*as_our_batch(emb_a, emb_b, labels, p_clean))
    assert loss.item() == pytest.approx(original_purl(kind, emb_a, emb_b, labels, p_clean).item(), rel=1e-5, abs=1e-6)
