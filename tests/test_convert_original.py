"""The original PURL code's networks and checkpoints: this project computes the same.

The expected values come from transcriptions of the original's forward passes
on state dicts with the original's parameter names and shapes (SpeechBrain 1.0's
ECAPA_TDNN; clova's ResNetSE as the original's ResNetEncoder feeds it), so both
the converter's name map and the models' arithmetic are checked against them.
"""

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from sklearn.cluster import KMeans

from purl.config import load_config
from purl.convert_original import (
    ConversionError,
    convert_original_checkpoint,
    convert_state_dict,
    ecapa_names,
    resnet_names,
)
from purl.data.datadir import read_kv
from purl.models import EcapaTdnn, ResNet, build_model
from purl.training.checkpoint import load_checkpoint, model_from_checkpoint
from tests.conftest import ROOT, copy_recipe, run_script, write_feature_dir
from tests.test_models import _seed_and_one_thread  # noqa: F401 (autouse: seeded, one thread)
from tests.test_trainer import train

FBANK = 80


def _batchnorm(state, prefix, channels):
    state[prefix + "weight"] = torch.rand(channels) + 0.5
    state[prefix + "bias"] = torch.randn(channels) * 0.1
    state[prefix + "running_mean"] = torch.randn(channels) * 0.1
    state[prefix + "running_var"] = torch.rand(channels) + 0.5
    state[prefix + "num_batches_tracked"] = torch.tensor(1000)


def _double(state: dict) -> dict:
    """In float64 the two computations agree to ~1e-12, so any real difference shows."""
    return {k: v.double() if v.is_floating_point() else v for k, v in state.items()}


def _bn(state, prefix, x, training):
    return F.batch_norm(x, state[prefix + "running_mean"].clone(), state[prefix + "running_var"].clone(),
                        state[prefix + "weight"], state[prefix + "bias"], training=training)


# --- the original's thin ResNet-34: clova's ResNetSE fed (batch, 1, time, freq) ---

THIN_LAYERS, THIN_FILTERS, THIN_STRIDES = (3, 4, 6, 3), (16, 32, 64, 128), (1, 2, 2, 1)


def original_resnet_state(layers=THIN_LAYERS, filters=THIN_FILTERS, n_out=192) -> OrderedDict:
    """Random weights under ResNetSE's names and shapes (SEBasicBlock, reduction 8, SAP)."""
    s = OrderedDict()
    s["conv1.weight"] = torch.randn(filters[0], 1, 7, 7) * 0.2
    _batchnorm(s, "bn1.", filters[0])
    inplanes = filters[0]
    for layer, (count, planes) in enumerate(zip(layers, filters), 1):
        for j in range(count):
            p = f"layer{layer}.{j}."
            s[p + "conv1.weight"] = torch.randn(planes, inplanes, 3, 3) * (2 / (9 * inplanes)) ** 0.5
            _batchnorm(s, p + "bn1.", planes)
            s[p + "conv2.weight"] = torch.randn(planes, planes, 3, 3) * (2 / (9 * planes)) ** 0.5
            _batchnorm(s, p + "bn2.", planes)
            s[p + "se.fc.0.weight"] = torch.randn(planes // 8, planes) * 0.3
            s[p + "se.fc.0.bias"] = torch.randn(planes // 8) * 0.1
            s[p + "se.fc.2.weight"] = torch.randn(planes, planes // 8) * 0.3
            s[p + "se.fc.2.bias"] = torch.randn(planes) * 0.1
            # clova's _make_layer: a downsample when stride != 1 (layer 4's (1, 1) tuple counts) or the width changes
            if j == 0 and (layer > 1 or inplanes != planes):
                s[p + "downsample.0.weight"] = torch.randn(planes, inplanes, 1, 1) * (2 / inplanes) ** 0.5
                _batchnorm(s, p + "downsample.1.", planes)
            inplanes = planes
    s["sap_linear.weight"] = torch.randn(inplanes, inplanes) * inplanes ** -0.5
    s["sap_linear.bias"] = torch.randn(inplanes) * 0.1
    s["attention"] = torch.randn(inplanes, 1) * 0.2
    s["fc.weight"] = torch.randn(n_out, inplanes) * inplanes ** -0.5
    s["fc.bias"] = torch.randn(n_out) * 0.1
    return s


def original_resnet_forward(s, x, layers=THIN_LAYERS, training=False):
    """ResNetEncoder.forward (x.unsqueeze(1)) then ResNetSE.forward with SAP, transcribed."""
    x = x.unsqueeze(1)  # (batch, 1, time, freq)
    x = torch.relu(_bn(s, "bn1.", F.conv2d(x, s["conv1.weight"], stride=(2, 1), padding=3), training))
    for layer, (count, stride) in enumerate(zip(layers, THIN_STRIDES), 1):
        for j in range(count):
            p = f"layer{layer}.{j}."
            step = stride if j == 0 else 1
            out = F.conv2d(x, s[p + "conv1.weight"], stride=step, padding=1)
            out = _bn(s, p + "bn1.", torch.relu(out), training)  # SEBasicBlock: conv -> ReLU -> BN
            out = _bn(s, p + "bn2.", F.conv2d(out, s[p + "conv2.weight"], padding=1), training)
            y = torch.relu(F.linear(out.mean((2, 3)), s[p + "se.fc.0.weight"], s[p + "se.fc.0.bias"]))
            y = torch.sigmoid(F.linear(y, s[p + "se.fc.2.weight"], s[p + "se.fc.2.bias"]))
            out = out * y[:, :, None, None]
            residual = x
            if p + "downsample.0.weight" in s:
                residual = _bn(s, p + "downsample.1.", F.conv2d(x, s[p + "downsample.0.weight"], stride=step), training)
            x = torch.relu(out + residual)
    x = torch.mean(x, dim=2, keepdim=True)  # over time
    x = x.permute(0, 3, 1, 2).squeeze(-1)  # (batch, freq', channels)
    h = torch.tanh(F.linear(x, s["sap_linear.weight"], s["sap_linear.bias"]))
    w = torch.matmul(h, s["attention"]).squeeze(dim=2)
    w = F.softmax(w, dim=1).view(x.size(0), x.size(1), 1)
    x = torch.sum(x * w, dim=1)
    return F.linear(x, s["fc.weight"], s["fc.bias"])


def test_original_thin_resnet34_has_1_395_798_parameters():
    state = original_resnet_state()
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 1_395_798
    assert sum(p.numel() for p in ResNet(layout="original").parameters()) == 1_395_798


@pytest.mark.parametrize("training", [False, True])
def test_resnet_original_layout_computes_the_original_thin_resnet(training):
    state = original_resnet_state()
    model = ResNet(layout="original")
    model.load_state_dict(convert_state_dict(state, model, resnet_names(state), "test"))
    model.double().train(training)
    x = torch.randn(3, 200, FBANK, dtype=torch.float64)
    with torch.no_grad():
        ours, theirs = model(x), original_resnet_forward(_double(state), x, training=training)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_resnet_clova_layout_is_another_function_of_the_same_weights():
    state = original_resnet_state()
    original, clova = ResNet(layout="original").eval(), ResNet(layout="clova").eval()
    for model in (original, clova):
        model.load_state_dict(convert_state_dict(state, model, resnet_names(state), "test"))
    x = torch.randn(2, 200, FBANK)
    with torch.no_grad():
        assert (original(x) - clova(x)).abs().max() > 1e-2


def test_resnet_original_layout_pools_over_20_frequency_positions():
    model = ResNet(layout="original").eval()
    seen = {}

    def record_input_shape(module, args, out):
        seen["shape"] = args[0].shape

    model.pool.register_forward_hook(record_input_shape)
    with torch.no_grad():
        model(torch.randn(2, 300, FBANK))
    assert seen["shape"] == (2, 128, 20)


def test_resnet_original_layout_initialises_convolutions_kaiming_fan_out():
    model = ResNet(layout="original")
    weight = model.blocks[-1].conv2.weight  # 128 x 128 x 3 x 3: fan-out 1152
    assert abs(weight.std().item() - math.sqrt(2 / 1152)) < 0.002


def test_resnet_original_layout_rejects_flattened_frequency():
    with pytest.raises(ValueError, match="flatten_freq needs layout 'clova'"):
        ResNet(layout="original", flatten_freq=True)


def test_resnet_unknown_layout_is_rejected():
    with pytest.raises(ValueError, match="layout must be one of original, clova"):
        ResNet(layout="time_freq")


# --- SpeechBrain 1.0's ECAPA_TDNN, on its own parameter names ---------------------

ECAPA_SMALL = dict(channels=[64, 64, 64, 64, 192], kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
                   attention_channels=32, res2net_scale=8, se_channels=16, embed_dim=32)


def _sb_conv(s, prefix, cin, cout, k, bias=True):
    """speechbrain.nnet.CNN.Conv1d: an nn.Conv1d as its '.conv'."""
    s[prefix + "conv.weight"] = torch.randn(cout, cin, k) * (1 / (cin * k)) ** 0.5
    if bias:
        s[prefix + "conv.bias"] = torch.randn(cout) * 0.1


def _sb_tdnn_state(s, prefix, cin, cout, k):
    _sb_conv(s, prefix + "conv.", cin, cout, k)
    _batchnorm(s, prefix + "norm.norm.", cout)


def speechbrain_ecapa_state(channels, kernel_sizes, dilations, attention_channels, res2net_scale, se_channels,
                            embed_dim) -> OrderedDict:
    """Random weights under ECAPA_TDNN(80, ...)'s names and shapes."""
    s = OrderedDict()
    _sb_tdnn_state(s, "blocks.0.", FBANK, channels[0], kernel_sizes[0])
    for i in range(1, len(channels) - 1):
        p, c, width = f"blocks.{i}.", channels[i], channels[i] // res2net_scale
        _sb_tdnn_state(s, p + "tdnn1.", channels[i - 1], c, 1)
        for j in range(res2net_scale - 1):
            _sb_tdnn_state(s, f"{p}res2net_block.blocks.{j}.", width, width, kernel_sizes[i])
        _sb_tdnn_state(s, p + "tdnn2.", c, c, 1)
        _sb_conv(s, p + "se_block.conv1.", c, se_channels, 1)
        _sb_conv(s, p + "se_block.conv2.", se_channels, c, 1)
        if channels[i - 1] != c:
            _sb_conv(s, p + "shortcut.", channels[i - 1], c, 1)
    _sb_tdnn_state(s, "mfa.", channels[-2] * (len(channels) - 2), channels[-1], kernel_sizes[-1])
    _sb_tdnn_state(s, "asp.tdnn.", channels[-1] * 3, attention_channels, 1)
    _sb_conv(s, "asp.conv.", attention_channels, channels[-1], 1)
    _batchnorm(s, "asp_bn.norm.", channels[-1] * 2)
    _sb_conv(s, "fc.", channels[-1] * 2, embed_dim, 1)
    return s


def _sb_conv_forward(s, prefix, x, dilation=1):
    weight = s[prefix + "conv.weight"]
    pad = dilation * (weight.shape[2] - 1) // 2  # SpeechBrain's "same" padding, reflect mode
    return F.conv1d(F.pad(x, (pad, pad), mode="reflect"), weight, s.get(prefix + "conv.bias"), dilation=dilation)


def _sb_tdnn_forward(s, prefix, x, dilation=1):
    return _bn(s, prefix + "norm.norm.", torch.relu(_sb_conv_forward(s, prefix + "conv.", x, dilation)), False)


def _sb_statistics(x, m):
    mean = (m * x).sum(2)
    return mean, torch.sqrt((m * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(1e-12))


def speechbrain_ecapa_forward(s, x, dilations, res2net_scale):
    """ECAPA_TDNN.forward (eval mode, no lengths) on SpeechBrain-named weights; (batch, 1, embed_dim)."""
    x = _sb_tdnn_forward(s, "blocks.0.", x.transpose(1, 2), dilations[0])
    xl = []
    for i in range(1, len(dilations) - 1):
        p = f"blocks.{i}."
        residual = _sb_conv_forward(s, p + "shortcut.", x) if p + "shortcut.conv.weight" in s else x
        h = _sb_tdnn_forward(s, p + "tdnn1.", x)
        ys = []
        for j, x_j in enumerate(torch.chunk(h, res2net_scale, dim=1)):
            if j == 0:
                y_j = x_j
            elif j == 1:
                y_j = _sb_tdnn_forward(s, f"{p}res2net_block.blocks.0.", x_j, dilations[i])
            else:
                y_j = _sb_tdnn_forward(s, f"{p}res2net_block.blocks.{j - 1}.", x_j + y_j, dilations[i])
            ys.append(y_j)
        h = _sb_tdnn_forward(s, p + "tdnn2.", torch.cat(ys, dim=1))
        se = torch.relu(_sb_conv_forward(s, p + "se_block.conv1.", h.mean(dim=2, keepdim=True)))
        x = torch.sigmoid(_sb_conv_forward(s, p + "se_block.conv2.", se)) * h + residual
        xl.append(x)
    x = _sb_tdnn_forward(s, "mfa.", torch.cat(xl, dim=1), dilations[-1])
    frames = x.shape[-1]
    mean, std = _sb_statistics(x, torch.ones(x.shape[0], 1, frames) / frames)
    attn = torch.cat([x, mean.unsqueeze(2).repeat(1, 1, frames), std.unsqueeze(2).repeat(1, 1, frames)], dim=1)
    attn = _sb_conv_forward(s, "asp.conv.", torch.tanh(_sb_tdnn_forward(s, "asp.tdnn.", attn)))
    mean, std = _sb_statistics(x, F.softmax(attn, dim=2))
    pooled = _bn(s, "asp_bn.norm.", torch.cat((mean, std), dim=1).unsqueeze(2), False)
    return _sb_conv_forward(s, "fc.", pooled).transpose(1, 2)


# --- the converter ------------------------------------------------------------


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def lightning_adam_state(encoder_state: dict, steps: int, lr: float = 0.01, weight_decay: float = 2e-6) -> dict:
    """optimizer_states[0] of the original's Adam (src/trainers.py:117-122) after
    ``steps`` steps: a state per parameter in the LightningModule's order (the
    encoder's, then the loss's temperature t), moments of each one's shape."""
    g = torch.Generator().manual_seed(0)
    shapes = [v.shape for k, v in encoder_state.items() if not k.endswith(BUFFERS)] + [torch.Size([])]
    state = {i: {"step": torch.tensor(float(steps)), "exp_avg": torch.randn(shape, generator=g) * 1e-3,
                 "exp_avg_sq": torch.rand(shape, generator=g) * 1e-6} for i, shape in enumerate(shapes)}
    group = {"lr": 0.0, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": weight_decay, "amsgrad": False,
             "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
             "initial_lr": lr, "params": list(range(len(shapes)))}
    return {"state": state, "param_groups": [group]}


def lightning_checkpoint(encoder_state: dict, temperature: float = 0.0713, *, epoch: int = 199,
                         global_step: int = 333400, optimizer: dict | None = None) -> dict:
    """What the original's ModelCheckpoint saves: the module's state_dict under
    'encoder.model.' and 'loss_func.', the Adam state and the LambdaLR's, plus
    Lightning's bookkeeping and the hyperparameters (a fitted KMeans among them)."""
    state = OrderedDict((f"encoder.model.{k}", v) for k, v in encoder_state.items())
    state["loss_func.temperature"] = torch.tensor(temperature)
    state["_ncu_gmm_start_epoch"] = 200
    kmeans = KMeans(n_clusters=2, n_init=1, random_state=0).fit(np.random.default_rng(0).normal(size=(10, 3)))
    return {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": "2.2.3",
        "state_dict": state,
        "optimizer_states": [optimizer or lightning_adam_state(encoder_state, global_step)],
        "lr_schedulers": [{"base_lrs": [0.01], "last_epoch": global_step, "_step_count": global_step + 1,
                           "_get_lr_called_within_step": False, "_last_lr": [0.0], "lr_lambdas": [{}]}],
        "hyper_parameters": {"learning_rate": 0.01, "optim_weight_decay": 2e-6, "clustering_model": kmeans,
                             "lr_scheduler_type": "cosine", "samples_per_epoch": 1_000_000, "batch_size": 600},
    }


def _write_config(path, name, args):
    path.write_text(yaml.safe_dump({"model": {"name": name, "args": args}}))
    return path


def test_converted_speechbrain_ecapa_checkpoint_computes_what_the_original_computes(tmp_path):
    sb_state = speechbrain_ecapa_state(**ECAPA_SMALL)
    torch.save(lightning_checkpoint(sb_state), tmp_path / "epoch=199_step=333400.ckpt")
    config = _write_config(tmp_path / "ecapa.yaml", "ecapa_tdnn", ECAPA_SMALL)
    out = tmp_path / "exp" / "models" / "final.pt"
    proc = run_script(ROOT / "steps" / "convert_original_checkpoint.py", config,
                      tmp_path / "epoch=199_step=333400.ckpt", out)
    assert "(epoch 199)" in proc.stdout
    model, saved_config = model_from_checkpoint(out)
    assert saved_config["model"] == {"name": "ecapa_tdnn", "args": ECAPA_SMALL}
    x = torch.randn(3, 150, FBANK, dtype=torch.float64)
    with torch.no_grad():
        ours = model.double().eval()(x)
        theirs = speechbrain_ecapa_forward(_double(sb_state), x, ECAPA_SMALL["dilations"], ECAPA_SMALL["res2net_scale"])
    torch.testing.assert_close(ours, theirs.squeeze(1), rtol=1e-9, atol=1e-9)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["loss"]["temperature.log_t"].item() == pytest.approx(math.log(0.0713))


def test_converted_thin_resnet_checkpoint_computes_what_the_original_computes(tmp_path):
    state = original_resnet_state()
    torch.save(lightning_checkpoint(state), tmp_path / "last.ckpt")
    config = {"model": {"name": "resnet34", "args": {"embed_dim": 192, "layout": "original"}}}
    model = ResNet(layout="original")
    model.load_state_dict(convert_original_checkpoint(tmp_path / "last.ckpt", config)["model"])
    x = torch.randn(2, 120, FBANK, dtype=torch.float64)
    with torch.no_grad():
        ours = model.double().eval()(x)
        torch.testing.assert_close(ours, original_resnet_forward(_double(state), x), rtol=1e-9, atol=1e-9)


def test_the_original_bare_model_pt_converts_without_temperature(tmp_path):
    torch.save(original_resnet_state(), tmp_path / "model.pt")
    ckpt = convert_original_checkpoint(tmp_path / "model.pt",
                                       {"model": {"name": "resnet34", "args": {"layout": "original"}}})
    assert "loss" not in ckpt and len(ckpt["model"]) == len(ResNet().state_dict())


def test_converter_names_unknown_and_missing_weights(tmp_path):
    state = original_resnet_state()
    del state["layer3.5.se.fc.2.bias"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(lightning_checkpoint(state), tmp_path / "bad.ckpt")
    config = _write_config(tmp_path / "resnet.yaml", "resnet34", {"layout": "original"})
    proc = run_script(ROOT / "steps" / "convert_original_checkpoint.py", config, tmp_path / "bad.ckpt",
                      tmp_path / "out.pt", check=False)
    assert proc.returncode == 1
    assert "bad.ckpt: does not fit the config's model" in proc.stderr
    assert "no place for: layer5.0.conv1.weight" in proc.stderr
    assert "it lacks (this project's names): blocks.12.se.2.bias" in proc.stderr
    assert not (tmp_path / "out.pt").exists()


def test_converter_names_unknown_lightning_entries(tmp_path):
    ckpt = lightning_checkpoint(original_resnet_state())
    ckpt["state_dict"]["projector.layers.0.weight"] = torch.zeros(2, 2)
    torch.save(ckpt, tmp_path / "proj.ckpt")
    with pytest.raises(ConversionError, match=r"unknown state_dict entries projector.layers.0.weight"):
        convert_original_checkpoint(tmp_path / "proj.ckpt", {"model": {"name": "resnet34", "args": {"layout": "original"}}})


def test_converter_names_a_size_that_differs_from_the_config(tmp_path):
    torch.save(lightning_checkpoint(original_resnet_state(n_out=256)), tmp_path / "a.ckpt")
    with pytest.raises(ConversionError, match=r"'fc.weight' has shape \(256, 128\), the model's 'fc.weight' \(192, 128\)"):
        convert_original_checkpoint(tmp_path / "a.ckpt", {"model": {"name": "resnet34", "args": {"layout": "original"}}})


def test_converter_refuses_the_clova_layout_for_the_original_resnet(tmp_path):
    torch.save(lightning_checkpoint(original_resnet_state()), tmp_path / "a.ckpt")
    with pytest.raises(ConversionError, match="set model.args.layout=original"):
        convert_original_checkpoint(tmp_path / "a.ckpt", {"model": {"name": "resnet34", "args": {}}})


# --- the training state: Adam moments and the schedule's step ------------------


def test_the_lightning_adam_state_becomes_this_projects_under_its_names(tmp_path):
    sb_state = speechbrain_ecapa_state(**ECAPA_SMALL)
    ckpt = lightning_checkpoint(sb_state)
    torch.save(ckpt, tmp_path / "epoch=199_step=333400.ckpt")
    ours = convert_original_checkpoint(tmp_path / "epoch=199_step=333400.ckpt",
                                       {"model": {"name": "ecapa_tdnn", "args": ECAPA_SMALL}})
    assert (ours["global_step"], ours["sampler"]) == (333400, {"epoch": 200, "step": 0})
    theirs = ckpt["optimizer_states"][0]["state"]
    their_index = {k: i for i, k in enumerate(k for k in sb_state if not k.endswith(BUFFERS))}
    names = ecapa_names(sb_state)
    model_params = [n for n, _ in EcapaTdnn(**ECAPA_SMALL).named_parameters()]
    adam = ours["optimizer"]["state"]
    assert len(adam) == len(model_params) + 1 == len(theirs)
    for j, name in enumerate(model_params):
        original = theirs[their_index[next(k for k, v in names.items() if v == name)]]
        assert torch.equal(adam[j]["exp_avg"].flatten(), original["exp_avg"].flatten()), name
        assert torch.equal(adam[j]["exp_avg_sq"].flatten(), original["exp_avg_sq"].flatten()), name
        assert adam[j]["step"].item() == 333400
    t = theirs[len(theirs) - 1]  # the temperature: t there, log t here
    assert adam[len(model_params)]["exp_avg"].item() == pytest.approx(0.0713 * t["exp_avg"].item(), rel=1e-6)
    assert adam[len(model_params)]["exp_avg_sq"].item() == pytest.approx(0.0713 ** 2 * t["exp_avg_sq"].item(), rel=1e-6)
    group = ours["optimizer"]["param_groups"][0]
    assert (group["initial_lr"], group["weight_decay"], group["lr"]) == (0.01, 2e-6, 0.0)  # the end of 200 epochs
    assert ours["scheduler"]["last_epoch"] == 333400


@pytest.mark.parametrize("change, message", [
    ({"learning_rate": 0.02}, "learning_rate 0.02 there, optim.lr 0.01 here"),
    ({"lr_scheduler_type": "constant"}, "lr_scheduler_type 'constant'"),
])
def test_a_schedule_other_than_the_configs_is_an_error(tmp_path, change, message):
    ckpt = lightning_checkpoint(original_resnet_state())
    ckpt["hyper_parameters"].update(change)
    torch.save(ckpt, tmp_path / "a.ckpt")
    with pytest.raises(ConversionError, match=f"its schedule is not the config's .*{message}"):
        convert_original_checkpoint(tmp_path / "a.ckpt", {"model": {"name": "resnet34", "args": {"layout": "original"}}})


def test_an_adam_state_of_other_parameters_is_an_error(tmp_path):
    state = original_resnet_state()
    adam = lightning_adam_state(state, 333400)
    adam["param_groups"][0]["params"].pop()
    torch.save(lightning_checkpoint(state, optimizer=adam), tmp_path / "a.ckpt")
    with pytest.raises(ConversionError, match=r"its Adam state holds 177 parameters, the config's model and loss 178 "
                                              r"\(the network's 177 and a learnt temperature\)"):
        convert_original_checkpoint(tmp_path / "a.ckpt", {"model": {"name": "resnet34", "args": {"layout": "original"}}})


def lightning_from_ours(ckpt: dict, sb_state: dict) -> dict:
    """A Lightning checkpoint of the original's layout holding one of this
    project's epoch checkpoints (a tiny ECAPA-TDNN): the original's names and
    parameter order, t instead of log t, and the moments to match."""
    to_ours = ecapa_names(sb_state)
    from_ours = {v: k for k, v in to_ours.items()}
    encoder = OrderedDict((k, ckpt["model"][to_ours[k]].reshape(v.shape)) for k, v in sb_state.items())
    config = ckpt["config"]["model"]
    ours = [n for n, _ in build_model(config["name"], **config["args"]).named_parameters()] + ["log_t"]
    theirs = [k for k in sb_state if not k.endswith(BUFFERS)] + ["loss_func.temperature"]
    t = math.exp(ckpt["loss"]["temperature.log_t"].item())
    state = {}
    for j, name in enumerate(ours):
        m = ckpt["optimizer"]["state"][j]
        key = "loss_func.temperature" if name == "log_t" else from_ours[name]
        scale = 1 / t if name == "log_t" else 1.0
        shape = torch.Size([]) if name == "log_t" else sb_state[key].shape
        state[theirs.index(key)] = {"step": m["step"], "exp_avg": m["exp_avg"].reshape(shape) * scale,
                                    "exp_avg_sq": m["exp_avg_sq"].reshape(shape) * scale ** 2}
    group = {**ckpt["optimizer"]["param_groups"][0], "params": list(range(len(theirs)))}
    return lightning_checkpoint(encoder, t, epoch=ckpt["sampler"]["epoch"] - 1, global_step=ckpt["global_step"],
                                optimizer={"state": state, "param_groups": [group]})


TINY_ECAPA = dict(channels=[16, 16, 16, 16, 48], kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
                  attention_channels=8, res2net_scale=2, se_channels=8, embed_dim=16)


def test_continuing_a_converted_checkpoint_carries_on_the_run_it_came_from(tmp_path, tiny_config):
    """Epoch 3 continued from the original's epoch=1 checkpoint, converted, is the
    run's own epoch 3 (a run of this project, written as the original saves it)."""
    data = write_feature_dir(tmp_path / "data")
    base = ["optim.epochs=3", "train.average_last=1"]
    straight = train(load_config(tiny_config, base), data, tmp_path / "pretrain")
    own = load_checkpoint(tmp_path / "pretrain" / "models" / "epoch_2.pt")
    torch.save(lightning_from_ours(own, speechbrain_ecapa_state(**TINY_ECAPA)), tmp_path / "epoch=1_step=8.ckpt")
    proc = run_script(ROOT / "steps" / "convert_original_checkpoint.py", "--set", "optim.epochs=3", tiny_config,
                      tmp_path / "epoch=1_step=8.ckpt", tmp_path / "converted")
    assert "holds the original's Adam moments and schedule step 8" in proc.stdout
    start = tmp_path / "converted" / "models" / "epoch_2.pt"
    assert (tmp_path / "converted" / "models" / "final.pt").is_file()
    converted = load_checkpoint(start)
    for j, moments in own["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(converted["optimizer"]["state"][j][key], moments[key], rtol=1e-6, atol=0)
    continued = train(load_config(tiny_config, base + [f"purl.init_checkpoint={start}", "purl.init_mode=continue"]),
                      data, tmp_path / "control")
    a, b = load_checkpoint(straight)["model"], load_checkpoint(continued)["model"]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(a[k], own["model"][k]) for k in a)  # epoch 3 moved the weights


def test_a_checkpoint_without_adam_state_converts_to_weights_and_says_so(tmp_path):
    torch.save(original_resnet_state(), tmp_path / "model.pt")
    config = _write_config(tmp_path / "resnet.yaml", "resnet34", {"layout": "original"})
    script = ROOT / "steps" / "convert_original_checkpoint.py"
    proc = run_script(script, config, tmp_path / "model.pt", tmp_path / "exp", check=False)
    assert proc.returncode == 1 and "records no epoch; give --epoch N" in proc.stderr
    proc = run_script(script, "--epoch", "200", config, tmp_path / "model.pt", tmp_path / "exp")
    assert "weights only (a bare model.pt)" in proc.stdout and "purl.init_mode=weights" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "exp" / "models" / "epoch_200.pt")
    assert "optimizer" not in ckpt and (tmp_path / "exp" / "models" / "final.pt").is_file()


@pytest.mark.slow
def test_a_converted_checkpoint_runs_the_voxceleb_recipe_from_stage_4_and_each_epoch_is_scored(tmp_path):
    """docs/voxceleb.md's example at toy size: the original's epoch=199 checkpoint of
    a tiny ECAPA-TDNN, converted into the paper protocol's pretraining dir; stage
    4 embeds its epoch_200.pt, stage 5 continues its Adam state to epoch 202 (2
    steps per epoch), stage 6 scores the four models and every epoch of the updates.
    Stage 1's dirs of the original's features (data/*_sbfbank) are stood in for
    by random features recorded as speechbrain's: the converted model reads those."""
    recipe = copy_recipe("voxceleb", tmp_path / "voxceleb")
    write_feature_dir(recipe / "data" / "vox2_dev_sbfbank", feature_type="speechbrain")
    # its own utterance ids: calibration refuses an utterance that is also in the evaluation list
    test = write_feature_dir(recipe / "data" / "vox1_sbfbank", num_speakers=3, utts_per_speaker=3, seed=1,
                             prefix="id1", feature_type="speechbrain")
    utts = sorted(read_kv(test / "utt2spk"))
    (test / "trials_vox1_O").write_text("".join(f"{a} {b} {'target' if a[:5] == b[:5] else 'nontarget'}\n"
                                                for i, a in enumerate(utts) for b in utts[i + 1:]))
    torch.save(lightning_checkpoint(speechbrain_ecapa_state(**TINY_ECAPA), global_step=400),
               tmp_path / "epoch=199_step=400.ckpt")
    sets = [a for key in ("channels", "attention_channels", "se_channels", "res2net_scale", "embed_dim")
            for a in ("--set", f"model.args.{key}={TINY_ECAPA[key]}".replace(" ", ""))]
    proc = run_script("bash", "-c", '. ./path.sh && steps/convert_original_checkpoint.py "$@"', "convert", *sets,
                      "conf/paper/ecapa_supcon.yaml", tmp_path / "epoch=199_step=400.ckpt",
                      "exp/ecapa_supcon_paper_sbfbank_noisy0_seed0",
                      cwd=recipe)
    assert "models/epoch_200.pt" in proc.stdout and "schedule step 400" in proc.stdout
    exp = recipe / "exp"
    for name in ("epoch_200.pt", "final.pt"):  # the original's front end: stages 4-6 refuse Kaldi fbank dirs
        assert load_checkpoint(exp / "ecapa_supcon_paper_sbfbank_noisy0_seed0" / "models" / name)[
            "feature_type"] == "speechbrain"
    overrides = ("data.speakers_per_batch=3 data.samples_per_epoch=12 data.chunk_frames=50 data.num_workers=0 "
                 "train.threads=1 optim.epochs=202")
    run_script("bash", "run.sh", "--stage", "4", "--gpus", "", "--nj", "1", "--vox2-valid-pairs", "",
               "--train-overrides", overrides, "--score-epochs", "201:202", cwd=recipe)
    assert "continuing exp/ecapa_supcon_paper_sbfbank_noisy0_seed0/models/epoch_200.pt from epoch 201, step 401" in \
        (exp / "ecapa_purl_paper_sbfbank_noisy0_seed0" / "log" / "train.log").read_text()
    assert json.loads((exp / "ecapa_supcon_paper_sbfbank_noisy0_seed0" / "reliability" / "report.json").read_text())[
        "settings"]["cosine_dtype"] == "float32"
    for name in ("supcon", "control", "filter0.5", "purl"):
        assert (exp / f"ecapa_{name}_paper_sbfbank_noisy0_seed0" / "scores" / "results.json").is_file(), name
    for name in ("control", "filter0.5", "purl"):
        epochs = exp / f"ecapa_{name}_paper_sbfbank_noisy0_seed0" / "scores_epochs"
        rows = (epochs / "results.csv").read_text().splitlines()
        assert [r.split(",")[:2] for r in rows[1:]] == [["201", "vox1_O"], ["202", "vox1_O"]], name
        assert (epochs / "eer.png").stat().st_size > 0 and "| 202 | vox1_O |" in (epochs / "results.md").read_text()
