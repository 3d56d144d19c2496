"""The memory plan of one training process: what the config and the model will hold on the device.

Parts, in bytes: weights (fp32 master weights and buffers), grads (one per trainable parameter, kept
across the micro-batches of an accumulation window), optimizer state (fused AdamW: exp_avg +
exp_avg_sq, 8 B/parameter; bitsandbytes 8-bit AdamW: 2 B/parameter + one fp32 absmax per 256, fp32
state below 4096 elements), 16-bit weight copies (autocast caches one per matmul weight for the
forward), activations of the worst micro-batch, and any other module kept resident (the DVAE when
codes are not precomputed, the eval synthesizer). Their sum is the peak of a step with gradient
accumulation: the next micro-batch's activations are built while the grads exist.

Activations come from the GPT-2 block shapes (b batch, s = 32 latents + text + audio positions,
h width, a heads) and are calibrated on CPU by scripts/bench_memory.py (docs/memory.md):
each block saves BLOCK_BYTES[...] bytes per element of b*s*h (the residual, layer-norm and
matmul inputs, q/k/v, the 4h MLP input and output; gelu_new's unfused formula saves 3 more 4h
tensors, a fused tanh-GELU none) plus, where attention is the math path (CPU), 3 fp32 b*a*s*s
tensors (probabilities, dropout noise, dropped probabilities). CUDA's memory-efficient SDPA kernel
keeps O(s) instead. Checkpointing keeps one fp32 b*s*h input per block and recomputes one block at
a time. The conditioning encoder (6 attention blocks over the prompt's mel frames) and the
perceiver are not checkpointed.

    plan = plan_memory(cfg, model, device, resident={"dvae": codec})
    log.info(plan.describe())
    plan.check(torch.cuda.get_device_properties(device).total_memory)  # on a GPU
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from amh.config import Config, ConfigError

GIB = 2**30
SAMPLES_PER_CODE = 1024
MEL_HOP = 256  # conditioning mel frames
# Kept free of the plan on a GPU: the CUDA context, cuBLAS workspaces and allocator fragmentation
# are outside torch.cuda.max_memory_allocated, which is what the plan predicts.
CUDA_RESERVE_BYTES = GIB // 2

# Bytes per element of b*s*h saved by one GPT-2 block in training mode, by (device type, compute
# dtype), for gelu_new (transformers' unfused NewGELUActivation) and a fused tanh GELU.
# cpu/fp32 is measured (saved-tensor bytes, scripts/bench_memory.py --calibrate); the others are the
# same tensors counted at their dtypes: 16-bit matmul inputs/outputs, fp32 residual and layer-norm
# inputs, 1-byte dropout masks on CUDA (CPU dropout saves its noise at the tensor's dtype).
BLOCK_BYTES = {
    ("cpu", "fp32"): {"gelu_new": 128, "fused": 80},
    ("cpu", "16bit"): {"gelu_new": 66, "fused": 42},
    ("cuda", "fp32"): {"gelu_new": 122, "fused": 74},
    ("cuda", "16bit"): {"gelu_new": 64, "fused": 40},
}
# Math-path attention saves 3 b*a*s*s tensors at the compute dtype; CUDA's efficient kernel none.
ATTENTION_SQUARES = {"cpu": 3, "cuda": 0}

OPTIMIZER_NAMES = {"adamw": "fused AdamW (fp32 state)", "adamw8bit": "8-bit AdamW (bitsandbytes)"}
BNB_MIN_8BIT_SIZE = 4096
BNB_BLOCK = 256


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and shared tensors counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.numel():
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def module_bytes(module: nn.Module) -> int:
    """Parameters and buffers of `module`."""
    return storage_bytes([*module.parameters(), *module.buffers()])


@dataclass(frozen=True)
class ModelFacts:
    """What the plan reads off the trainable GPT (an XttsGptForTraining or upstream GPT), once."""

    weight_bytes: int  # parameters + buffers
    trainable: tuple[tuple[int, int], ...]  # (numel, element size) per trainable tensor
    matmul_weight_numel: int  # Linear / Conv1D / Conv1d weights: what autocast casts to 16 bits
    layers: int
    width: int
    heads: int
    text_vocab: int
    audio_vocab: int
    latents: int
    cond_blocks: int
    cond_heads: int
    perceiver_depth: int
    perceiver_inner: int  # heads x dim_head of its attention (512 in XTTS v2, whatever the width)
    perceiver_heads: int
    activation: str  # "gelu_new" or "fused"
    cond_attention: str = "einsum"  # "einsum" (upstream's) or "fused" (amh.xtts.attention's SDPA)

    @classmethod
    def of(cls, model: nn.Module) -> "ModelFacts":
        from transformers.activations import NewGELUActivation
        from transformers.pytorch_utils import Conv1D

        from amh.xtts.attention import FusedQKVAttention

        gpt = model.gpt if hasattr(model, "logits_and_targets") else model
        blocks = gpt.gpt.h
        matmul = [m.weight for m in gpt.modules() if isinstance(m, (nn.Linear, Conv1D, nn.Conv1d))]
        return cls(
            weight_bytes=module_bytes(model),
            trainable=tuple((p.numel(), p.element_size()) for p in model.parameters() if p.requires_grad),
            matmul_weight_numel=sum(w.numel() for w in matmul if w.requires_grad),
            layers=len(blocks),
            width=gpt.gpt.config.n_embd,
            heads=gpt.gpt.config.n_head,
            text_vocab=gpt.text_embedding.num_embeddings,
            audio_vocab=gpt.mel_embedding.num_embeddings,
            latents=gpt.conditioning_perceiver.latents.shape[0],
            cond_blocks=len(gpt.conditioning_encoder.attn),
            cond_heads=gpt.conditioning_encoder.attn[0].num_heads,
            perceiver_depth=len(gpt.conditioning_perceiver.layers),
            perceiver_inner=gpt.conditioning_perceiver.layers[0][0].to_q.out_features,
            perceiver_heads=gpt.conditioning_perceiver.layers[0][0].heads,
            activation="gelu_new" if isinstance(blocks[0].mlp.act, NewGELUActivation) else "fused",
            cond_attention="fused" if isinstance(gpt.conditioning_encoder.attn[0].attention, FusedQKVAttention)
            else "einsum",
        )

    @property
    def trainable_numel(self) -> int:
        return sum(n for n, _ in self.trainable)


@dataclass(frozen=True)
class MicroBatch:
    """The shape of one micro-batch: samples, text positions, audio positions, prompt mel frames."""

    batch: int
    text_positions: int  # text tokens + [START] + [STOP]
    mel_positions: int  # codes + start/stop codes and the 3 trailing stops
    cond_frames: int

    def sequence(self, latents: int) -> int:
        return latents + self.text_positions + self.mel_positions


def worst_micro_batches(cfg: Config) -> list[MicroBatch]:
    """The micro-batch shapes the data config allows, the largest ones the plan must fit.

    With train.batch_size: batch_size clips of data.max_audio_seconds with data.max_text_tokens.
    With data.max_batch_seconds (padded seconds per batch): for clip lengths from the shortest to the
    longest, as many clips as the budget allows, text assumed proportional to length (up to
    max_text_tokens) and the prompt at most the clip (same_utterance) or max_conditioning_seconds.
    """
    d = cfg.data

    def shape(batch: int, seconds: float) -> MicroBatch:
        samples = int(seconds * d.sample_rate)
        text = min(d.max_text_tokens, math.ceil(d.max_text_tokens * seconds / d.max_audio_seconds))
        cond = d.max_conditioning_seconds if d.conditioning == "same_speaker" else min(seconds, d.max_conditioning_seconds)
        return MicroBatch(batch=batch, text_positions=text + 2,
                          mel_positions=math.ceil(samples / SAMPLES_PER_CODE) + 5,
                          cond_frames=int(cond * d.sample_rate) // MEL_HOP + 1)

    if d.max_batch_seconds is None:
        return [shape(cfg.train.batch_size, d.max_audio_seconds)]
    lengths = sorted({d.max_audio_seconds, d.min_audio_seconds,
                      *[x / 2 for x in range(math.ceil(2 * d.min_audio_seconds), math.floor(2 * d.max_audio_seconds) + 1)]})
    cap = d.max_batch_size or math.inf
    return [shape(max(1, min(cap, math.floor(d.max_batch_seconds / s))), s) for s in lengths]


def _dtype_key(precision: str) -> str:
    return "fp32" if precision == "fp32" else "16bit"


def block_bytes(facts: ModelFacts, mb: MicroBatch, device_type: str, precision: str) -> int:
    """Saved tensors of one GPT-2 block for micro-batch `mb`."""
    s = mb.sequence(facts.latents)
    elem = 4 if precision == "fp32" else 2
    linear = BLOCK_BYTES[(device_type, _dtype_key(precision))][facts.activation] * mb.batch * s * facts.width
    squares = ATTENTION_SQUARES[device_type] * elem * mb.batch * facts.heads * s * s
    return linear + squares


def saved_activation_bytes(facts: ModelFacts, mb: MicroBatch, device_type: str, precision: str,
                           checkpointing: bool) -> int:
    """Tensors the forward of one micro-batch saves for the backward (what autograd holds at its end)."""
    elem = 4 if precision == "fp32" else 2
    b, h, s, f = mb.batch, facts.width, mb.sequence(facts.latents), mb.cond_frames
    # Checkpointing keeps each block's fp32 input (the residual stream) instead of its tensors.
    blocks = facts.layers * (4 * b * s * h if checkpointing else block_bytes(facts, mb, device_type, precision))
    # Conditioning encoder, per attention block: upstream's einsum attention saves 8 b*f*h tensors
    # (group norm, qkv, scaled q and k, attention output) and one b*heads*f*f (the probabilities); the
    # fused SDPA kernel 7 b*f*h (group norm, conv input, contiguous q/k/v, output, proj input) and an
    # fp32 log-sum-exp per head and frame. The perceiver, per layer: keys and values over prompt +
    # latents at its inner width, and the latents' attention weights and their softmax.
    if facts.cond_attention == "fused":
        cond = facts.cond_blocks * b * (elem * 7 * f * h + 4 * facts.cond_heads * f)
    else:
        cond = facts.cond_blocks * elem * b * (8 * f * h + facts.cond_heads * f * f)
    context = f + facts.latents
    perceiver = facts.perceiver_depth * elem * b * (2 * context * facts.perceiver_inner
                                                    + 2 * facts.perceiver_heads * facts.latents * context)
    embeddings = 2 * 4 * b * s * h  # summed embeddings and their dropout
    # fp32 logits (the loss upcasts) and their log-softmax, text and audio heads.
    logits = 2 * 4 * b * (facts.text_vocab * mb.text_positions + facts.audio_vocab * mb.mel_positions)
    return blocks + cond + perceiver + embeddings + logits


def activation_bytes(facts: ModelFacts, mb: MicroBatch, device_type: str, precision: str,
                     checkpointing: bool) -> int:
    """Activation peak of one micro-batch: the saved tensors, plus one block's gradient temporaries
    during its backward, plus (checkpointing) the block being recomputed."""
    block = block_bytes(facts, mb, device_type, precision)
    saved = saved_activation_bytes(facts, mb, device_type, precision, checkpointing)
    return saved + (2 if checkpointing else 1) * block


def optimizer_bytes(facts: ModelFacts, optimizer: str) -> int:
    if optimizer == "adamw":
        # exp_avg + exp_avg_sq at the parameter's dtype, and fused AdamW's fp32 step tensor.
        return sum(2 * n * e + 4 for n, e in facts.trainable)
    if optimizer == "adamw8bit":
        total = 2 * 256 * 4  # the two shared quantile maps
        for n, _ in facts.trainable:
            if n < BNB_MIN_8BIT_SIZE:
                total += 2 * 4 * n
            else:
                total += 2 * n + 2 * 4 * math.ceil(n / BNB_BLOCK)
        return total
    raise ValueError(f"optim.optimizer: {optimizer!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")


class MemoryPlanError(ConfigError):
    """The plan does not fit the device; the message names the keys that would make it fit."""


@dataclass(frozen=True)
class MemoryPlan:
    cfg: Config
    facts: ModelFacts
    device_type: str
    parts: dict[str, int]  # name -> bytes, in display order
    micro_batch: MicroBatch  # the worst one
    resident: dict[str, int]  # other modules kept on the device (already in `parts`)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """One start-up line: each part and the total, with what sized the activations."""
        c, mb = self.cfg, self.micro_batch
        parts = " + ".join(f"{name} {b / GIB:.2f}" for name, b in self.parts.items())
        batching = (f"max_batch_seconds {c.data.max_batch_seconds:g}"
                    + (f", max_batch_size {c.data.max_batch_size}" if c.data.max_batch_size else "")
                    + f" (worst: {mb.batch} x {mb.mel_positions} audio + "
                    f"{mb.text_positions} text positions)" if c.data.max_batch_seconds is not None else
                    f"batch {mb.batch} x {c.data.max_audio_seconds:g} s, {c.data.max_text_tokens} text tokens")
        return (f"memory plan: {parts} = {self.total / GIB:.2f} GiB ({c.train.precision}, "
                f"{OPTIMIZER_NAMES[c.optim.optimizer]}, checkpointing {'on' if c.model.gradient_checkpointing else 'off'}, "
                f"{batching}, {self.facts.trainable_numel / 1e6:.1f} M trainable)")

    def fits(self, device_total_bytes: int, reserve_bytes: int = CUDA_RESERVE_BYTES) -> bool:
        return self.total <= device_total_bytes - reserve_bytes

    def check(self, device_total_bytes: int, reserve_bytes: int = CUDA_RESERVE_BYTES) -> None:
        """Raise MemoryPlanError naming the config changes (and what each saves) when the plan does not fit."""
        if self.fits(device_total_bytes, reserve_bytes):
            return
        hints = []
        for key, value in self.alternatives():
            other = self.replan({key: value})
            if other.total < self.total:
                shown = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
                hints.append(f"{key}={shown} (-{(self.total - other.total) / GIB:.2f} GiB)")
        raise MemoryPlanError(
            f"memory plan {self.total / GIB:.2f} GiB does not fit this device ({device_total_bytes / GIB:.2f} GiB, "
            f"{reserve_bytes / GIB:.2f} kept free): set " + (", ".join(hints) or "nothing smaller is possible")
            + " (profiles for 8/12/24 GB cards: docs/memory.md)")

    def alternatives(self) -> list[tuple[str, object]]:
        """Single config changes that shrink the plan: (dotted key, typed value)."""
        c = self.cfg
        out: list[tuple[str, object]] = []
        if c.optim.optimizer != "adamw8bit":
            out.append(("optim.optimizer", "adamw8bit"))
        if not c.model.gradient_checkpointing:
            out.append(("model.gradient_checkpointing", True))
        if c.data.max_batch_seconds is not None:
            if self.micro_batch.batch > 1:  # the worst batch is many short clips: cap their number
                out.append(("data.max_batch_size", max(1, self.micro_batch.batch // 2)))
            out.append(("data.max_batch_seconds", c.data.max_batch_seconds / 2))
        elif c.train.batch_size > 1:
            out.append(("train.batch_size", c.train.batch_size // 2))
        if c.data.max_audio_seconds > 2 * c.data.min_audio_seconds:
            out.append(("data.max_audio_seconds", max(2 * c.data.min_audio_seconds, c.data.max_audio_seconds / 2)))
        return out

    def replan(self, changes: Mapping[str, object]) -> "MemoryPlan":
        """The same model, device and resident modules with config keys changed, e.g. {"train.batch_size": 1}."""
        cfg = self.cfg
        for key, value in changes.items():
            section, name = key.split(".")
            cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: value})})
        return _plan(cfg, self.facts, self.device_type, self.resident)


def _plan(cfg: Config, facts: ModelFacts, device_type: str, resident: Mapping[str, int]) -> MemoryPlan:
    precision = cfg.train.precision
    batches = worst_micro_batches(cfg)
    acts = [activation_bytes(facts, mb, device_type, precision, cfg.model.gradient_checkpointing) for mb in batches]
    worst = max(range(len(batches)), key=acts.__getitem__)
    parts = {
        "weights": facts.weight_bytes,
        "grads": sum(n * e for n, e in facts.trainable),
        "optimizer": optimizer_bytes(facts, cfg.optim.optimizer),
    }
    if precision != "fp32":
        parts["16-bit copies"] = 2 * facts.matmul_weight_numel
    parts["activations"] = acts[worst]
    parts.update(resident)
    return MemoryPlan(cfg, facts, device_type, parts, batches[worst], dict(resident))


def plan_memory(cfg: Config, model: nn.Module, device: torch.device | str,
                resident: Mapping[str, nn.Module | int] | None = None) -> MemoryPlan:
    """The plan for training `model` (the fp32 trainable GPT, before the optimizer is built) under `cfg`
    on `device`; `resident` names other modules (or byte counts) kept on the device, e.g.
    {"dvae": codec} when codes are computed online, {"synthesizer": synth.model} when it stays resident."""
    device_type = torch.device(device).type
    if device_type not in ATTENTION_SQUARES:
        raise ValueError(f"memory plan: device type {device_type!r} is not modelled (cpu, cuda)")
    others = {name: (m if isinstance(m, int) else module_bytes(m)) for name, m in (resident or {}).items()}
    return _plan(cfg, ModelFacts.of(model), device_type, others)
