"""amh.train.step.apply_model_options: the fused GELU is the same function as GPT-2's gelu_new, the fused
conditioning attention the same as upstream's einsum attention."""
from __future__ import annotations

import torch
from TTS.tts.layers.tortoise.arch_utils import QKVAttentionLegacy
from transformers.activations import GELUTanh, NewGELUActivation

from amh.xtts.attention import FusedQKVAttention


def _model(release, fused: bool):
    from amh.train.step import apply_model_options
    from amh.xtts.forward import XttsGptForTraining
    from amh.xtts.release import build_xtts

    xtts, _ = build_xtts(release, release / "vocab.json")
    module = XttsGptForTraining(xtts.gpt)
    if fused:
        apply_model_options(module)
    for m in module.modules():  # deterministic: no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module.train()


def test_gelu_new_and_the_fused_tanh_gelu_agree_elementwise():
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float32, requires_grad=True)
    new, fused = NewGELUActivation()(x), GELUTanh()(x)
    torch.testing.assert_close(fused, new, rtol=1e-6, atol=1e-6)
    g_new, = torch.autograd.grad(new.sum(), x)
    g_fused, = torch.autograd.grad(fused.sum(), x)
    torch.testing.assert_close(g_fused, g_new, rtol=1e-5, atol=5e-6)


def test_the_fused_model_options_give_the_same_loss_and_gradients(tiny_release):
    g = torch.Generator().manual_seed(0)
    batch = (torch.randint(3, 40, (2, 9), generator=g), torch.tensor([9, 5]), torch.randint(0, 64, (2, 20), generator=g),
             torch.tensor([20_000, 15_000]), torch.randn(2, 80, 120, generator=g), torch.tensor([[2000, 9000], [-1, -1]]))
    results = []
    for fused in (False, True):
        m = _model(tiny_release, fused)
        acts = {type(b.mlp.act) for b in m.gpt.gpt.h}
        assert acts == ({GELUTanh} if fused else {NewGELUActivation})
        attention = {type(b.attention) for b in m.gpt.conditioning_encoder.attn}
        assert attention == ({FusedQKVAttention} if fused else {QKVAttentionLegacy})
        loss = m(*batch).total
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None},
                        m.state_dict().keys()))
    (loss0, grads0, keys0), (loss1, grads1, keys1) = results
    assert keys0 == keys1  # no parameter or buffer added: the export is unchanged
    torch.testing.assert_close(loss1, loss0, rtol=1e-6, atol=1e-6)
    assert grads0.keys() == grads1.keys()
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_conditioning_attention_is_upstreams_attention():
    """At XTTS v2's real shape (16 heads x 64 channels, a 6 s prompt of 517 frames): outputs and input
    gradients as upstream's einsum path within fp32 rounding; a mask still takes upstream's path."""
    torch.manual_seed(0)
    legacy = QKVAttentionLegacy(16)
    fused = FusedQKVAttention(legacy)
    qkv = torch.randn(2, 3 * 1024, 517, requires_grad=True)
    probe = torch.randn(2, 1024, 517)
    grads = []
    for module in (legacy, fused):
        out = module(qkv)
        grads.append((out.detach(), *torch.autograd.grad((out * probe).sum(), qkv)))
    (out0, g0), (out1, g1) = grads
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-5)
    mask = torch.rand(2, 517, 517) > 0.1
    torch.testing.assert_close(fused(qkv, mask), legacy(qkv, mask))
