"""Supervised-contrastive loss and the PURL losses built on it.

Every loss is a module with ``forward(embeddings, labels, pair_weights=None,
groups=None)`` returning ``(loss, metrics)``, where metrics is a dict of floats
to log. ``embeddings`` are (batch, dim) and need not be normalised; ``labels``
(batch,) are the (possibly noisy) speaker labels; ``pair_weights`` (batch,
batch) holds w_ij, the reliability of the positive pair (i, j) from stage 4,
for the PURL losses (entries of non-positive pairs are ignored); ``groups``
(batch,), given when a speaker may fill several rows of a batch
(data.sampler=with_replacement), the row each sample was drawn in.

SupCon is Khosla et al. (2020), L_out: for anchor i with positives P(i) and all
other samples A(i),
    L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )
averaged over the anchors that have at least one positive.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LearnableTemperature(nn.Module):
    """t = exp(log_t), clamped to [min_t, max_t] so that a diverging step cannot
    make the logits overflow (t -> 0) or the loss flat (t -> large)."""

    def __init__(self, init: float = 0.1, learnable: bool = True, min_t: float = 0.01, max_t: float = 1.0):
        super().__init__()
        if not min_t <= init <= max_t:
            raise ValueError(f"temperature {init} is outside [{min_t}, {max_t}]")
        log_t = torch.tensor(math.log(init))
        if learnable:
            self.log_t = nn.Parameter(log_t)
        else:
            self.register_buffer("log_t", log_t)
        self.min_t, self.max_t = min_t, max_t

    def forward(self) -> torch.Tensor:
        return self.log_t.exp().clamp(self.min_t, self.max_t)


def supcon_from_logits(logits: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, int]:
    """SupCon given (B, B) logits z_i.z_j/t and a (B, B) boolean positive mask.

    The diagonal is excluded from the denominator; anchors without positives do
    not count. Returns (loss, number of anchors). Stable: the row maximum is
    subtracted inside logsumexp.
    """
    batch = logits.shape[0]
    self_mask = torch.eye(batch, dtype=torch.bool, device=logits.device)
    positives = positives & ~self_mask
    log_denominator = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    num_positives = positives.sum(1)
    anchors = num_positives > 0
    if not anchors.any():
        return logits.sum() * 0.0, 0
    mean_log_prob = (log_prob * positives).sum(1)[anchors] / num_positives[anchors]
    return -mean_log_prob.mean(), int(anchors.sum())


def positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B,) labels -> (B, B) same-label mask without the diagonal."""
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)


class SupConLoss(nn.Module):
    """Supervised contrastive loss with a learnable temperature (init 0.1)."""

    needs_pair_weights = False

    def __init__(self, temperature: float = 0.1, learn_temperature: bool = True):
        super().__init__()
        self.temperature = LearnableTemperature(temperature, learn_temperature)

    def logits(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (normalised z, cosine matrix, logits); computed in float32."""
        z = F.normalize(embeddings.float(), dim=1)
        cosine = z @ z.T
        t = self.temperature()
        return z, cosine, cosine / t

    def forward(self, embeddings, labels, pair_weights=None, groups=None):
        _, _, logits = self.logits(embeddings)
        loss, _ = supcon_from_logits(logits, positive_mask(labels))
        return loss, {"loss": loss.item(), "supcon": loss.item(), "temperature": self.temperature().item()}


class PurlLoss(SupConLoss):
    """PURL: SupCon on reliable pairs (w > threshold) and unlearning of the others.

    kind="soft":   SupCon(reliable) + alpha * mean over all positive pairs of (1 - w) * cos
    kind="hard":   SupCon(reliable) + alpha * mean over unreliable pairs of cos
    kind="ascent": SupCon(reliable) - alpha * SupCon(unreliable)
    The mean runs over unordered pairs (i < j). With w = 1 everywhere (and a positive
    for every sample, as in P x K batches), "soft" is SupCon.

    SupCon(reliable) is, as in the original work, SupCon over the batch of the
    samples that have a reliable positive: a pair judged unreliable leaves the
    batch, as positive and as negative (in pair batches, K = 2: the reliable rows).
    SupCon(unreliable) is likewise SupCon over the unreliable pairs' samples alone.
    A batch with one such pair gives 0 (its anchors see only their positive),
    what the original's skip "n <= 1" gives. ``keep_unreliable_negatives=True``
    keeps every sample in every denominator instead (SupCon over the whole batch
    with only the reliable, or unreliable, pairs as positives).

    With ``groups`` (pair batches whose speakers may repeat: the original's PURL
    loader), the weight is the pair's, as the original's src/trainers.py:450-552
    uses it: w of a row's two samples decides whether the row is reliable;
    SupCon(reliable) runs over the reliable rows' samples with every same-label
    pair among them a positive (two rows of one speaker: cross-row positives,
    whatever the reliability of the cross-row utterance pairs); soft's term is
    the mean over all rows of (1 - w_row) * cos of the row's two samples, hard's
    over the unreliable rows; ascent's SupCon(unreliable) runs over the
    unreliable rows' samples, cross-row positives among them included.
    """

    needs_pair_weights = True
    KINDS = ("soft", "hard", "ascent")

    def __init__(self, kind: str = "soft", alpha: float = 0.5, threshold: float = 0.5,
                 temperature: float = 0.1, learn_temperature: bool = True, keep_unreliable_negatives: bool = False):
        super().__init__(temperature, learn_temperature)
        if kind not in self.KINDS:
            raise ValueError(f"PURL loss kind '{kind}' is not one of {', '.join(self.KINDS)}")
        self.kind, self.alpha, self.threshold = kind, alpha, threshold
        self.keep_unreliable_negatives = keep_unreliable_negatives

    def supcon_over(self, logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """SupCon with these positives: over the samples that have one, or over the
        whole batch with keep_unreliable_negatives."""
        if not self.keep_unreliable_negatives:
            members = positives.any(1)
            logits, positives = logits[members][:, members], positives[members][:, members]
        return supcon_from_logits(logits, positives)[0]

    def forward(self, embeddings, labels, pair_weights=None, groups=None):
        if pair_weights is None:
            raise ValueError("PurlLoss needs pair_weights (the stage 4 reliability of each positive pair)")
        _, cosine, logits = self.logits(embeddings)
        positives = positive_mask(labels)
        w = pair_weights.to(cosine.dtype)
        if groups is not None:
            return self.forward_rows(cosine, logits, positives, w, groups)
        reliable = positives & (w > self.threshold)
        unreliable = positives & ~reliable
        supcon_clean = self.supcon_over(logits, reliable)
        upper = torch.triu(torch.ones_like(positives), diagonal=1)
        if self.kind == "soft":
            pairs = positives & upper
            unlearn = ((1 - w) * cosine)[pairs].mean() if pairs.any() else cosine.sum() * 0.0
            loss = supcon_clean + self.alpha * unlearn
        elif self.kind == "hard":
            pairs = unreliable & upper
            unlearn = cosine[pairs].mean() if pairs.any() else cosine.sum() * 0.0
            loss = supcon_clean + self.alpha * unlearn
        else:
            unlearn = self.supcon_over(logits, unreliable)
            loss = supcon_clean - self.alpha * unlearn
        n_clean = int((reliable & upper).sum())
        n_noisy = int((unreliable & upper).sum())
        return loss, self.metrics(loss, supcon_clean, unlearn, n_clean, n_noisy)

    def metrics(self, loss, supcon_clean, unlearn, n_clean: int, n_noisy: int) -> dict:
        return {
            "loss": loss.item(),
            "supcon": supcon_clean.item(),
            "unlearn": unlearn.item(),
            "n_clean": n_clean,
            "n_noisy": n_noisy,
            "clean_ratio": n_clean / max(1, n_clean + n_noisy),
            "temperature": self.temperature().item(),
        }

    def forward_rows(self, cosine, logits, positives, w, groups):
        """The loss of pair rows (``groups``: each sample's row, two samples a row)."""
        partner = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool,
                                                                     device=groups.device)
        if not bool((partner.sum(1) == 1).all()):
            raise ValueError("PurlLoss with groups: every row must hold two samples (data.utts_per_speaker=2)")
        row_w = (w * partner).sum(1)  # each sample's pair weight
        clean = row_w > self.threshold
        reliable = positives & clean[:, None] & clean[None, :]
        unreliable = positives & ~clean[:, None] & ~clean[None, :]
        supcon_clean = self.supcon_over(logits, reliable)
        pairs = partner & torch.triu(torch.ones_like(partner), diagonal=1)  # each row once
        if self.kind == "soft":
            unlearn = ((1 - w) * cosine)[pairs].mean()
            loss = supcon_clean + self.alpha * unlearn
        elif self.kind == "hard":
            noisy_pairs = pairs & ~clean[:, None]
            unlearn = cosine[noisy_pairs].mean() if noisy_pairs.any() else cosine.sum() * 0.0
            loss = supcon_clean + self.alpha * unlearn
        else:
            unlearn = self.supcon_over(logits, unreliable)
            loss = supcon_clean - self.alpha * unlearn
        n_clean = int((pairs & clean[:, None]).sum())
        n_noisy = int(pairs.sum()) - n_clean
        return loss, self.metrics(loss, supcon_clean, unlearn, n_clean, n_noisy)


LOSS_TYPES = ("supcon",) + PurlLoss.KINDS  # what a config's loss.type names


def build_loss(kind: str, **kwargs) -> nn.Module:
    """kind: "supcon" (pretraining and the control run) or a PURL kind."""
    if kind == "supcon":
        kwargs = {k: v for k, v in kwargs.items() if k in ("temperature", "learn_temperature")}
        return SupConLoss(**kwargs)
    return PurlLoss(kind=kind, **kwargs)
