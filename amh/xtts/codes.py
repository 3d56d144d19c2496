"""Frozen audio front of XTTS training: DVAE codes and conditioning mels from 22.05 kHz waveforms.

Always fp32 and outside autocast: the DVAE picks codes by nearest codebook entry (an argmin over
distances that fp16 would perturb), as upstream's GPTTrainer does.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

SAMPLES_PER_CODE = 1024  # two stride-2 convs over hop-256 mel frames
log = logging.getLogger(__name__)


def dvae_hparams(state: dict[str, torch.Tensor]) -> dict:
    """DiscreteVAE constructor arguments read off a plain `dvae.pth` state dict.

    The real release uses 512/1024 widths and 3 residual blocks; the tiny fixture is smaller.
    Reading the shapes lets one loader serve both without a side file.
    """
    try:
        first = state["encoder.0.0.weight"]  # (hidden, channels, kernel)
        embed = state["codebook.embed"]  # (codebook_dim, num_tokens)
    except KeyError as err:
        raise ValueError(f"dvae.pth: missing {err.args[0]!r}; is this an XTTS DiscreteVAE state dict?") from None
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.(\d+)\.net\.", k))}
    convs = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.(\d+)\.0\.weight$", k))}
    return dict(
        channels=first.shape[1],
        normalization=None,
        positional_dims=1,
        num_tokens=embed.shape[1],
        codebook_dim=embed.shape[0],
        hidden_dim=first.shape[0],
        num_resnet_blocks=len(blocks),
        kernel_size=first.shape[2],
        num_layers=len(convs),
        use_transposed_convs=False,
    )


class AudioCodec(nn.Module):
    """DVAE codes (1024 samples each) and the perceiver's conditioning mels, both frozen."""

    def __init__(self, dvae: nn.Module, mel_stats: torch.Tensor, sample_rate: int = 22050):
        super().__init__()
        from TTS.tts.layers.tortoise.arch_utils import TorchMelSpectrogram

        self.dvae = dvae.eval().requires_grad_(False)
        # mel_norm_file=None keeps upstream from opening its default URL; the norms are set below.
        self.dvae_mel = TorchMelSpectrogram(mel_norm_file=None, sampling_rate=sample_rate)
        self.style_mel = TorchMelSpectrogram(
            filter_length=2048, hop_length=256, win_length=1024, normalize=False, sampling_rate=sample_rate,
            mel_fmin=0, mel_fmax=8000, n_mel_channels=80, mel_norm_file=None,
        )
        self.register_buffer("mel_stats", mel_stats.float().clone())
        self.requires_grad_(False)

    @classmethod
    def from_release(cls, release_dir: str | Path, device: str | torch.device = "cpu", *,
                     dvae_on_device: bool = True) -> "AudioCodec":
        """The codec on `device`. dvae_on_device=False (the data carries precomputed codes) leaves the
        51.6 M-parameter DVAE in host memory; the first batch without codes moves it over (`codes`)."""
        from TTS.tts.layers.xtts.dvae import DiscreteVAE

        release_dir = Path(release_dir)
        state = torch.load(release_dir / "dvae.pth", map_location="cpu", weights_only=True)
        dvae = DiscreteVAE(**dvae_hparams(state))
        # The release's dvae.pth lacks the `discrete_loss.*` running buffers; everything else must load.
        missing, unexpected = dvae.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("discrete_loss.")]
        if missing or unexpected:
            raise ValueError(f"{release_dir / 'dvae.pth'}: missing keys {missing[:5]}, unexpected {unexpected[:5]}")
        mel_stats = torch.load(release_dir / "mel_stats.pth", map_location="cpu", weights_only=True)
        codec = cls(dvae, mel_stats)
        if dvae_on_device:
            return codec.to(device)
        for name, module in codec.named_children():
            if name != "dvae":
                module.to(device)
        codec.mel_stats = codec.mel_stats.to(device)
        return codec

    @property
    def dvae_device(self) -> torch.device:
        return next(self.dvae.parameters()).device

    def _mel(self, transform: nn.Module, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.float()
        if wav.ndim == 3:
            wav = wav.squeeze(1)
        mel = transform.mel_stft.to(wav.device)(wav)
        return torch.log(torch.clamp(mel, min=1e-5)) / self.mel_stats[None, :, None]

    @torch.no_grad()
    def codes(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) or (B, T) float waveforms -> (B, ~T/1024) int64 DVAE codes."""
        if self.dvae_device != wav.device:  # kept off the device for precomputed codes; this batch has none
            log.warning("a batch without precomputed codes: moving the DVAE to %s (%.0f MB) to encode it",
                        wav.device, sum(p.numel() * p.element_size() for p in self.dvae.parameters()) / 2**20)
            self.dvae.to(wav.device)
        with torch.autocast(wav.device.type, enabled=False):
            return self.dvae.get_codebook_indices(self._mel(self.dvae_mel, wav))

    @torch.no_grad()
    def cond_mels(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) or (B, T) conditioning waveforms -> (B, 80, frames) normalised log-mels."""
        with torch.autocast(cond.device.type, enabled=False):
            return self._mel(self.style_mel, cond)
