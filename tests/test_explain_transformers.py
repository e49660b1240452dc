"""Explanations on vision transformers and modern CNNs (#20): the default layer per family, token and
channels-last outputs read as feature maps, every method on every family, oracles (pytorch-grad-cam
with its documented ``reshape_transform``, Captum) and attention rollout against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_explain_conformance import assert_untouched, fast, snapshot
from transformer_models import FAMILIES, inputs, swin, tv_swin, tv_vit, vit

import cnnlens
from cnnlens.errors import CnnlensError
from cnnlens.explain import METHODS
from cnnlens.explain.layers import default_layer_view

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# ---- every method on every family ------------------------------------------------------------------


SLOW = {("convnext", "occlusion"), ("efficientnet", "occlusion"), ("efficientnet", "scorecam")}  # 3-4 s each
CASES = [pytest.param(f, m, marks=[pytest.mark.slow] if (f, m) in SLOW else [], id=f"{f}-{m}")
         for f in FAMILIES for m in METHODS.names()]


@pytest.mark.parametrize("family, method", CASES)
def test_every_method_runs_on_every_family(family, method):
    model = FAMILIES[family]()
    model.train()  # the caller's mode: it must come back
    snap = snapshot(model)
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    x = inputs(family)
    why = METHODS.get(method)().unsupported(model)
    if why:  # attention rollout on Swin (windows) and the CNNs: a clear error, the model untouched
        assert method == "attention_rollout" and family in ("swin", "tv_swin", "convnext", "efficientnet")
        with pytest.raises(CnnlensError, match="attention_rollout needs"):
            cnnlens.explain(model, x, method, target=[0, 1, 2], chunk_size=2)
        assert_untouched(model, snap)
        return
    e = cnnlens.explain(model, x, method, target=[0, 1, 2], chunk_size=2, **fast(method))
    assert e.maps.shape == (3, *x.shape[-2:]) and e.maps.dtype == torch.float32
    assert torch.isfinite(e.maps).all()
    assert e.maps.abs().sum() > 0 or e.extras.get("zero_maps", torch.zeros(1)).any()
    assert e.targets.tolist() == [0, 1, 2]
    assert (e.layer is not None) == METHODS.get(method).uses_layer
    assert (e.layer_transform is not None) == (e.layer is not None)
    model.train()
    assert_untouched(model, snap)
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == fused


# ---- the default layer -----------------------------------------------------------------------------

DEFAULTS = {
    # family: (default layer, transform kind, prefix tokens)
    "vit": ("blocks.1.norm1", "tokens", 1),  # the head reads the class token
    "deit": ("blocks.1.norm1", "tokens", 2),  # class + distillation tokens
    "swin": ("layers.1.blocks.0", "nhwc", 0),  # the final stage
    "convnext": ("stages.3.blocks.1", "nchw", 0),  # the last residual block
    "efficientnet": ("conv_head", "nchw", 0),  # the last conv (1x1 head conv)
    "tv_vit": ("encoder.layers.encoder_layer_1.ln_1", "tokens", 1),
    "tv_swin": ("features.3.0", "nhwc", 0),
}


@pytest.mark.parametrize("family", list(DEFAULTS))
def test_default_layer_per_family_gives_a_map_that_is_not_constant(family):
    model = FAMILIES[family]()
    x = inputs(family, n=2)
    name, kind, prefix = DEFAULTS[family]
    got, _, view = default_layer_view(model, x[:1])
    assert (got, view.kind, view.prefix) == (name, kind, prefix)
    e = cnnlens.explain(model, x, "gradcam")
    assert e.layer == name and e.layer_transform == view.describe()
    cam = e.extras["cam"]
    assert min(cam.shape[-2:]) >= 2
    assert (cam.flatten(1).std(1) > 0).all(), "a constant (blank) map"


def test_default_layer_is_remembered_per_input_shape():
    model = swin()
    x = inputs("swin", n=1)
    assert default_layer_view(model, x) == default_layer_view(model, x)
    assert default_layer_view(model, x)[1] is model.layers[1].blocks[0]


@pytest.mark.parametrize("factory, block", [(vit, "blocks.1"), (tv_vit, "encoder.layers.encoder_layer_1")])
def test_the_last_block_of_a_class_token_vit_gives_a_blank_gradcam(factory, block):
    # why the default is the last block's first normalization: from the last block's output only the
    # class token reaches the head, so the patch tokens' gradient is exactly zero
    model = factory()
    x = inputs("vit", n=2)
    e = cnnlens.explain(model, x, "gradcam", layer=block)
    assert e.layer_transform.startswith("tokens [B, 1+4x4, D]")
    assert (e.maps == 0).all() and e.extras["zero_maps"].all()


def test_a_vit_that_averages_its_tokens_uses_its_last_block():
    model = vit(class_token=False, global_pool="avg")
    x = inputs("vit", n=2)
    e = cnnlens.explain(model, x, "gradcam")
    assert e.layer == "blocks.1" and e.layer_transform.startswith("tokens [B, 0+4x4, D]")
    assert (e.extras["cam"].flatten(1).std(1) > 0).all()


def test_register_tokens_are_dropped():
    model = vit(reg_tokens=4)
    x = inputs("vit", n=2)
    e = cnnlens.explain(model, x, "gradcam")
    assert e.layer == "blocks.1.norm1"
    assert "[B, 5+4x4, D]" in e.layer_transform and "5 prefix tokens" in e.layer_transform


def test_layer_overrides_the_default_and_is_read_through_its_own_view():
    model = swin()
    x = inputs("swin", n=2)
    e = cnnlens.explain(model, x, "gradcam", layer="layers.0")  # the first stage: 8x8, channels-last
    assert e.layer == "layers.0" and e.layer_transform.startswith("channels-last")
    assert e.extras["cam"].shape == (2, 8, 8)
    v = cnnlens.explain(vit(), inputs("vit", n=2), "gradcam", layer="patch_embed")  # tokens, no prefix
    assert v.layer_transform.startswith("tokens [B, 0+4x4, D]") and v.extras["cam"].shape == (2, 4, 4)


def test_explain_many_records_the_layer_and_transform():
    model = vit()
    x = inputs("vit", n=2)
    r = cnnlens.explain_many(model, x, ["gradcam", "saliency", "scorecam"])
    assert r["gradcam"].layer == r["scorecam"].layer == "blocks.1.norm1"
    assert r["gradcam"].layer_transform == r["scorecam"].layer_transform
    assert r["saliency"].layer is None and r["saliency"].layer_transform is None
    one = cnnlens.explain(model, x, "gradcam")
    torch.testing.assert_close(r["gradcam"].maps, one.maps)


def test_a_token_layer_needs_one_grid_per_call():
    from cnnlens.explain.layers import LayerView

    view = LayerView("tokens", 1, (4, 4))
    with pytest.raises(CnnlensError, match="expected 1\\+4x4"):
        view.split(torch.zeros(1, 1 + 9, 8))
    out = torch.arange(2 * 17 * 3, dtype=torch.float32).view(2, 17, 3)
    act, rebuilt = view.split(out)
    assert torch.equal(rebuilt, out)
    # patch token i sits at row i // 4, column i % 4; channels first
    assert torch.equal(act[1, :, 2, 3], out[1, 1 + 2 * 4 + 3])


# ---- oracles -----------------------------------------------------------------------------------------

pgc = pytest.importorskip("pytorch_grad_cam")
captum_attr = pytest.importorskip("captum.attr")
from pytorch_grad_cam import base_cam as pgc_base  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def vit_reshape(tensor, height=4, width=4):
    """pytorch-grad-cam's documented ViT ``reshape_transform`` (tutorials/vision_transformers.md)."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape(tensor):
    """pytorch-grad-cam's documented Swin ``reshape_transform`` (usage_examples/swinT_example.py),
    for timm's channels-last ``[B, h, w, C]`` stage outputs."""
    result = tensor.reshape(tensor.size(0), tensor.size(1), tensor.size(2), tensor.size(3))
    return result.transpose(2, 3).transpose(1, 2)


@pytest.fixture
def raw_pgc(monkeypatch):
    """pytorch-grad-cam without its min-max normalization and resize: its raw ReLU'd cams."""
    monkeypatch.setattr(pgc_base, "scale_cam_image", lambda cam, target_size=None: np.float32(cam))


def close(mine, ref, tol=1e-5):
    ref = ref.detach().float() if isinstance(ref, torch.Tensor) else torch.as_tensor(np.asarray(ref)).float()
    assert ref.abs().max() > 0, "the reference is all zero: the comparison would say nothing"
    torch.testing.assert_close(mine.detach().float(), ref, rtol=tol, atol=tol * ref.abs().max().item())


ORACLES = {"vit": (vit, lambda m: m.blocks[-1].norm1, vit_reshape),
           "swin": (swin, lambda m: m.layers[-1].blocks[-1], swin_reshape),
           "tv_swin": (tv_swin, lambda m: m.features[-1][-1], swin_reshape)}
PGC = {"gradcam": "GradCAM", "gradcam_pp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
       "scorecam": "ScoreCAM"}


@pytest.mark.parametrize("method", list(PGC))
@pytest.mark.parametrize("family", list(ORACLES))
def test_cams_equal_pytorch_grad_cam_with_its_reshape_transform(raw_pgc, family, method):
    factory, layer_of, reshape = ORACLES[family]
    model = factory()
    x = inputs("vit", n=3)
    t = [0, 1, 3]
    layer = layer_of(model)
    with getattr(pgc, PGC[method])(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in t])
    e = cnnlens.explain(model, x, method, target=t)  # the default layer: the same one, found alone
    assert dict(model.named_modules())[e.layer] is layer
    # XGrad-CAM divides by each channel's activation sum, which on a LayerNorm'd stage output can be
    # near 0: float rounding (cnnlens runs the passes on channels-last inputs) is amplified there
    close(e.extras["cam"], ref, tol=1e-4 if method == "xgradcam" else 1e-5)
    ups = F.interpolate(e.extras["cam"][:, None], size=x.shape[-2:], mode="bilinear")[:, 0]
    torch.testing.assert_close(e.maps, ups)


@pytest.mark.parametrize("family", ["vit", "swin", "deit"])
def test_gradient_methods_equal_captum(family):
    model = FAMILIES[family]()
    x = inputs(family, n=3)
    t = torch.tensor([0, 2, 3])
    close(cnnlens.explain(model, x, "saliency", target=t).maps,
          captum_attr.Saliency(model).attribute(x, target=t, abs=True).amax(1))
    close(cnnlens.explain(model, x, "gradient_x_input", target=t).maps,
          captum_attr.InputXGradient(model).attribute(x, target=t).sum(1))
    ig = captum_attr.IntegratedGradients(model).attribute(x, baselines=0.0, target=t, n_steps=16)
    close(cnnlens.explain(model, x, "integrated_gradients", target=t, steps=16).maps, ig.sum(1), tol=1e-4)


# ---- attention rollout -------------------------------------------------------------------------------

class FixedAttention(torch.nn.Module):
    """Stands in for a block's ``attn_drop``: returns hand-set attention ``[heads, T, T]`` for every image."""

    def __init__(self, attn: list[list[list[float]]]) -> None:
        super().__init__()
        self.register_buffer("attn", torch.tensor(attn, dtype=torch.float32))

    def forward(self, a):
        return self.attn.expand(a.shape[0], -1, -1, -1)


def hand_set_vit(block1, block2):
    """A 2-block timm ViT on 16x32 inputs, patch 16: a class token and a 1x2 grid (T = 3), 2 heads,
    with its attention replaced by hand-set matrices (fused attention on, as timm's default)."""
    import timm

    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=(16, 32),
                          depth=2, embed_dim=8, num_heads=2).eval()
    for blk, attn in zip(m.blocks, (block1, block2)):
        blk.attn.fused_attn = True
        blk.attn.attn_drop = FixedAttention(attn)
    return m


I3 = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
B1 = [I3, [[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]]
B2 = [[[0, 1, 0], [0, 1, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0], [0, 1, 0]]]


@pytest.mark.parametrize("fusion, expected", [
    # mean: block 1 (A+I)/2 = [[.75,.125,.125],[.125,.75,.125],[.125,.125,.75]];
    #       block 2 (A+I)/2 = [[.5,.5,0],[.25,.75,0],[0,.25,.75]]; class row of the product:
    #       .5*[.75,.125,.125] + .5*[.125,.75,.125] = [.4375, .4375, .125] -> patches [.4375, .125]
    ("mean", [0.4375, 0.125]),
    # max: block 1 rows [1,.5,.5]+I over 2 -> [2/3,1/6,1/6] (and permutations); block 2 max
    #      [[0,1,0],[1,1,0],[0,1,1]] -> rows [.5,.5,0], [1/3,2/3,0], [0,1/3,2/3]; class row:
    #      .5*[2/3,1/6,1/6] + .5*[1/6,2/3,1/6] = [5/12, 5/12, 1/6]
    ("max", [5 / 12, 1 / 6]),
    # min: block 1 min = 0 -> identity; block 2 min [[0,1,0],0,0] -> class row [.5,.5,0]
    ("min", [0.5, 0.0]),
])
def test_attention_rollout_equals_a_hand_computation(fusion, expected):
    model = hand_set_vit(B1, B2)
    x = torch.randn(2, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    snap = snapshot(model)
    e = cnnlens.explain(model, x, "attention_rollout", head_fusion=fusion)
    want = torch.tensor([[expected]] * 2)  # [B, 1, 2]: the same hand-set attention for both images
    torch.testing.assert_close(e.extras["rollout"], want, rtol=0, atol=1e-6)
    torch.testing.assert_close(e.maps, F.interpolate(want[:, None], size=(16, 32), mode="bilinear")[:, 0])
    assert e.extras["prefix_tokens"] == 1 and e.extras["blocks"] == 2 and e.layer is None
    assert all(b.attn.fused_attn for b in model.blocks)  # switched off for the call only
    assert_untouched(model, snap)


def test_attention_rollout_discard_ratio_by_hand():
    # block 1 = M in both heads, block 2 = identity; discard 0.34 drops the 3 smallest of M's 9
    # entries (.1, .15, .2); (M' + I)/2 = [[.75,.15,0],[0,.8,.15],[.125,0,.8]], row 0 normalized by
    # .9 -> [5/6, 1/6, 0]; the identity block changes nothing -> patches [1/6, 0]
    m1 = [[.5, .3, .2], [.1, .6, .3], [.25, .15, .6]]
    model = hand_set_vit([m1, m1], [I3, I3])
    x = torch.randn(1, 3, 16, 32)
    keep = cnnlens.explain(model, x, "attention_rollout")
    torch.testing.assert_close(keep.extras["rollout"], torch.tensor([[[0.15, 0.1]]]), rtol=0, atol=1e-6)
    thin = cnnlens.explain(model, x, "attention_rollout", discard_ratio=0.34)
    torch.testing.assert_close(thin.extras["rollout"], torch.tensor([[[1 / 6, 0.0]]]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="discard_ratio"):
        cnnlens.explain(model, x, "attention_rollout", discard_ratio=1.0)
    with pytest.raises(ValueError, match="head_fusion must be one of mean, max, min"):
        cnnlens.explain(model, x, "attention_rollout", head_fusion="median")


def test_attention_rollout_reads_torchvision_attention_per_head():
    # the weights captured through nn.MultiheadAttention equal the module's own per-head weights on
    # its input (ln_1's output), and the rollout is built from them
    from cnnlens.explain.rollout import rollout

    model = tv_vit()
    x = inputs("tv_vit", n=2)
    ins = []
    hooks = [layer.ln_1.register_forward_hook(lambda _m, _i, o: ins.append(o.detach()))
             for layer in model.encoder.layers]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    attns = []
    with torch.no_grad():
        for layer, a in zip(model.encoder.layers, ins):
            attns.append(layer.self_attention(a, a, a, need_weights=True, average_attn_weights=False)[1])
    ref = rollout(attns, "mean")[:, 0, 1:].reshape(2, 4, 4).float()
    e = cnnlens.explain(model, x, "attention_rollout")
    torch.testing.assert_close(e.extras["rollout"], ref, rtol=1e-5, atol=1e-7)
    assert e.extras["rollout"].flatten(1).std(1).min() > 0


def test_attention_rollout_gets_trust_scores():
    from cnnlens.data.base import ImageDataset
    from cnnlens.metrics import run_trust

    g = torch.Generator().manual_seed(0)
    n = 12
    images = (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(n) % 4
    ds = ImageDataset(name="toy", images=images, labels=labels, classes=["a", "b", "c", "d"],
                      splits={"train": torch.arange(n), "test": torch.arange(n)},
                      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    report = run_trust(vit(), ds, ["attention_rollout", "gradcam"], n_images=6, steps=4, cascade=False)
    assert "attention_rollout" in report.methods and not report.skipped
    sc = report.scores["attention_rollout"]
    assert len(sc["deletion_auc"].values) == 6 and np.isfinite(sc["deletion_auc"].mean)
    assert set(report.passed["attention_rollout"]) == set(report.tests)


# ---- Score-CAM on wide layers, records -----------------------------------------------------------------

def test_scorecam_max_channels_scores_the_most_varying_channels():
    model = vit()
    x = inputs("vit", n=2)
    t = torch.tensor([1, 2])
    full = cnnlens.explain(model, x, "scorecam", target=t)
    assert full.extras["channels_scored"] == full.extras["channels"] == 48
    same = cnnlens.explain(model, x, "scorecam", target=t, max_channels=48)
    torch.testing.assert_close(same.maps, full.maps)
    e = cnnlens.explain(model, x, "scorecam", target=t, max_channels=5, batch_size=3)
    assert e.extras["channels_scored"] == 5 and e.extras["channels"] == 48
    # reference, one image and one channel at a time: the layer's tokens as a 4x4 map
    acts = []
    h = model.blocks[1].norm1.register_forward_hook(lambda _m, _i, o: acts.append(o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    a = acts[0][:, 1:, :].transpose(1, 2).reshape(2, 48, 4, 4)
    for i in range(2):
        keep = sorted(a[i].flatten(1).var(1).topk(5).indices.tolist())
        assert e.extras["scored_channels"][i].tolist() == keep
        scores = []
        for c in keep:
            up = F.interpolate(a[i, c][None, None], size=(32, 32), mode="bilinear", align_corners=True)[0, 0]
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                scores.append(model(x[i:i + 1] * mask)[0, t[i]])
        w = torch.stack(scores).softmax(0)
        cam = (w[:, None, None] * a[i, keep]).sum(0).clamp_min(0)
        torch.testing.assert_close(e.extras["cam"][i], cam, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="max_channels must be a positive int"):
        cnnlens.explain(model, x, "scorecam", max_channels=0)


def test_explanations_json_and_the_report_caption_name_the_layer_transform(tmp_path):
    import json

    from cnnlens.explain import explain_images
    from cnnlens.report.html import _transform

    imgs = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    from cnnlens.rundir import ExplainMaps

    res = explain_images(vit(), imgs, (0.5,) * 3, (0.25,) * 3, ["gradcam", "scorecam", "attention_rollout"],
                         method_options={"scorecam": {"max_channels": 8}})
    ExplainMaps.from_explanations(res, [0, 1], None, None).save(tmp_path)
    meta = json.loads((tmp_path / "explain" / "explanations.json").read_text())["methods"]
    want = "tokens [B, 1+4x4, D] reshaped to [B, D, 4, 4] (1 prefix (class) token dropped)"
    assert meta["gradcam"]["layer"] == "blocks.1.norm1" and meta["gradcam"]["layer_transform"] == want
    assert _transform(meta["gradcam"]) == f" ({want})"
    assert _transform(meta["scorecam"]) == f" ({want}; Score-CAM scored the 8 most varying of 48 channels)"
    assert meta["attention_rollout"]["layer"] is None
    assert meta["attention_rollout"]["extras"]["head_fusion"] == "mean"
    assert meta["attention_rollout"]["extras"]["blocks"] == 2
