"""Speaker encoders: shapes, parameter counts, equivalence to the reference formulation, registry."""

import pytest
import torch
import torch.nn.functional as F

from purl.models import MODELS, EcapaTdnn, ModelArgumentError, ResNet, build_model

FBANK = 80


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # One thread: on a shared 2-core machine OpenMP's spinning threads wait for
    # a descheduled sibling at every op, which turns seconds into minutes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


# --- shapes -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_maps_fbank_to_embed_dim(name):
    model = build_model(name)
    out = model(torch.randn(3, 200, FBANK))
    assert out.shape == (3, model.embed_dim)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("frames", [20, 21, 157])
def test_any_number_of_frames_gives_one_embedding(name, frames):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, frames, FBANK))
    assert out.shape == (2, model.embed_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_step_gives_finite_gradients_everywhere(name):
    model = build_model(name).train()
    model(torch.randn(4, 64, FBANK)).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_embedding_is_deterministic_and_independent_of_the_batch(name):
    model = build_model(name).eval()
    x = torch.randn(3, 120, FBANK)
    with torch.no_grad():
        first, again, alone = model(x), model(x), model(x[1:2])
    assert torch.equal(first, again)
    torch.testing.assert_close(alone, first[1:2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling, dim", [("sap", 192), ("asp", 192), ("stats", 128)])
def test_resnet_poolings_give_embed_dim(pooling, dim):
    model = ResNet(num_blocks=(1, 1, 1, 1), pooling=pooling, embed_dim=dim)
    assert model(torch.randn(2, 50, FBANK)).shape == (2, dim)


def test_ecapa_without_global_context_gives_embed_dim():
    model = EcapaTdnn(channels=[64, 64, 64, 64, 192], global_context=False, embed_dim=32)
    assert model(torch.randn(2, 50, FBANK)).shape == (2, 32)


# --- parameter counts ---------------------------------------------------------
# SpeechBrain's ECAPA_TDNN(80, lin_neurons=192, channels=...) has exactly these
# counts (same layers, all convolutions with bias).  The thin ResNet-34 is
# clova's ResNetSE34L (SE reduction 8, SAP) with a 192-dim output layer; the
# wide one WeSpeaker's ResNet34 (feat_dim 80, embed_dim 256, TSTP).


def test_ecapa_c256_has_2_05m_parameters():
    assert num_params(build_model("ecapa_tdnn")) == 2_049_952


def test_ecapa_c512_has_6_19m_parameters():
    assert num_params(build_model("ecapa_tdnn", channels=[512] * 4 + [1536])) == 6_194_048


def test_ecapa_c1024_has_20_77m_parameters():
    assert num_params(build_model("ecapa_tdnn", channels=[1024] * 4 + [3072])) == 20_767_552


def test_thin_resnet34_has_1_40m_parameters():
    assert num_params(build_model("resnet34")) == 1_395_798


def test_wide_resnet34_has_6_63m_parameters():
    assert num_params(build_model("resnet34_wide")) == 6_634_336


def test_every_model_reports_its_embed_dim():
    assert build_model("ecapa_tdnn", embed_dim=256).embed_dim == 256
    assert build_model("resnet34").embed_dim == 192
    assert build_model("resnet34_wide").embed_dim == 256


# --- ECAPA computes what SpeechBrain's ECAPA_TDNN computes -----------------------


def _sb_tdnn(block, x):
    """SpeechBrain's TDNNBlock: reflect-padded conv (padding even for k=1) -> ReLU -> BN."""
    conv = block.conv
    pad = conv.dilation[0] * (conv.kernel_size[0] - 1) // 2
    x = F.conv1d(F.pad(x, (pad, pad), mode="reflect"), conv.weight, conv.bias, dilation=conv.dilation)
    return block.norm(torch.relu(x))


def _sb_stats(x, weights):
    mean = (weights * x).sum(2)
    std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(1e-12))
    return mean, std


def speechbrain_forward(model: EcapaTdnn, x: torch.Tensor) -> torch.Tensor:
    """A plain transcription of SpeechBrain's ECAPA_TDNN.forward with ``model``'s weights."""
    x = _sb_tdnn(model.blocks[0], x.transpose(1, 2))
    outputs = []
    for block in model.blocks[1:]:
        residual = x if block.shortcut is None else block.shortcut(x)
        h = _sb_tdnn(block.tdnn1, x)
        chunks = torch.chunk(h, len(block.res2net.blocks) + 1, dim=1)
        ys = [chunks[0]]
        for i, (tdnn, chunk) in enumerate(zip(block.res2net.blocks, chunks[1:])):
            ys.append(_sb_tdnn(tdnn, chunk if i == 0 else chunk + ys[-1]))
        h = _sb_tdnn(block.tdnn2, torch.cat(ys, dim=1))
        squeeze, excite = block.se_squeeze, block.se_excite  # SpeechBrain: kernel-1 Conv1d
        s = torch.relu(F.conv1d(h.mean(2, keepdim=True), squeeze.weight.unsqueeze(2), squeeze.bias))
        s = torch.sigmoid(F.conv1d(s, excite.weight.unsqueeze(2), excite.bias))
        x = s * h + residual
        outputs.append(x)
    x = _sb_tdnn(model.mfa, torch.cat(outputs, dim=1))
    frames = x.shape[2]
    if model.asp.global_context:
        mean, std = _sb_stats(x, torch.full((x.shape[0], 1, frames), 1.0 / frames))
        context = [stat.unsqueeze(2).repeat(1, 1, frames) for stat in (mean, std)]
        attn = torch.cat([x, *context], dim=1)
    else:
        attn = x
    attn = F.conv1d(torch.tanh(_sb_tdnn(model.asp.tdnn, attn)), model.asp.conv.weight, model.asp.conv.bias)
    mean, std = _sb_stats(x, torch.softmax(attn, dim=2))
    return model.fc(model.asp_bn(torch.cat([mean, std], dim=1)))


def _randomise_batchnorm(model):
    """Non-trivial running statistics and affine parameters, so eval mode tests them."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()


@pytest.mark.parametrize("global_context", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_ecapa_matches_speechbrain_formulation(global_context, mode):
    model = EcapaTdnn(channels=[64, 64, 64, 64, 192], global_context=global_context)
    _randomise_batchnorm(model)
    model.train(mode == "train")
    x = torch.randn(4, 97, FBANK)
    with torch.no_grad():
        torch.testing.assert_close(model(x), speechbrain_forward(model, x), rtol=1e-4, atol=1e-4)


def test_ecapa_gradients_match_speechbrain_formulation():
    model = EcapaTdnn(channels=[64, 64, 64, 64, 192]).train()
    x = torch.randn(4, 97, FBANK)
    params = [p for name, p in model.named_parameters() if name != "asp.conv.bias"]  # its gradient is 0
    ours = torch.autograd.grad(model(x).square().sum(), params)
    theirs = torch.autograd.grad(speechbrain_forward(model, x).square().sum(), params)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())


def test_resnet_stats_pooling_is_mean_and_unbiased_std_over_time():
    model = ResNet(num_blocks=(1, 1, 1, 1), pooling="stats")
    x = torch.randn(2, 5, 7)
    pooled = model.pool(x)
    torch.testing.assert_close(pooled, torch.cat([x.mean(2), (x.var(2) + 1e-7).sqrt()], dim=1))


def test_resnet_sap_weights_frames_by_softmax_attention():
    model = ResNet(num_blocks=(1, 1, 1, 1), pooling="sap")
    pool = model.pool
    x = torch.randn(2, 128, 9)
    scores = torch.tanh(pool.linear(x.transpose(1, 2))) @ pool.attention  # (2, 9, 1)
    expected = (x * torch.softmax(scores, dim=1).transpose(1, 2)).sum(2)
    torch.testing.assert_close(pool(x), expected)


# --- configuration errors -----------------------------------------------------------


def test_unknown_model_name_lists_known_models_and_closest_match():
    with pytest.raises(ValueError, match=r"'ecapa'.*did you mean 'ecapa_tdnn'.*resnet34, resnet34_wide"):
        build_model("ecapa")


def test_unknown_model_argument_names_the_accepted_arguments():
    expected = r"chanels.*did you mean 'channels'.*accepts: input_dim, channels"
    with pytest.raises(ModelArgumentError, match=expected):
        build_model("ecapa_tdnn", chanels=[512] * 4 + [1536])


def test_unknown_model_argument_is_both_value_and_type_error():
    for exc in (ValueError, TypeError):
        with pytest.raises(exc):
            build_model("resnet34", dropout=0.1)


def test_wide_resnet_accepts_the_resnet_arguments():
    model = build_model("resnet34_wide", embed_dim=128, pooling="asp")
    assert model(torch.randn(1, 40, FBANK)).shape == (1, 128)


def test_mismatched_ecapa_layer_lists_are_rejected():
    with pytest.raises(ValueError, match="same length"):
        EcapaTdnn(channels=[256, 256, 768], kernel_sizes=[5, 3, 3, 1], dilations=[1, 2, 3, 1])


def test_unknown_resnet_pooling_is_rejected():
    with pytest.raises(ValueError, match="sap, asp, stats"):
        ResNet(pooling="mean")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_train_under_bf16_autocast(name):
    model = build_model(name, num_blocks=(1, 1, 1, 1)) if name.startswith("resnet") else build_model(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 40, FBANK))
    assert out.shape == (2, model.embed_dim)
    out.float().square().mean().backward()
