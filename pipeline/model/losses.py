"""Masked-patch MSE and multi-resolution STFT loss (torch.stft)."""

from __future__ import annotations

import torch


def masked_mse(recon: torch.Tensor, target: torch.Tensor, patch_mask: torch.Tensor, patch_length: int) -> torch.Tensor:
    """Mean squared error over the samples of masked patches only. recon/target [B, C, L]."""
    m = patch_mask.repeat_interleave(patch_length, dim=-1).to(recon.dtype)
    return ((recon - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


class MultiResolutionSTFTLoss(torch.nn.Module):
    """Sum over resolutions of spectral convergence + L1 of log magnitudes (Yamamoto et al. 2020)."""

    def __init__(self, n_ffts: list[int], hops: list[int], eps: float = 1e-2):
        super().__init__()
        self.resolutions = list(zip(n_ffts, hops))
        self.eps = eps
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _mag(self, x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(x.float(), n_fft, hop_length=hop, window=window, center=True, return_complex=True)
        return spec.abs().clamp_min(self.eps)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = recon.reshape(-1, recon.shape[-1]), target.reshape(-1, target.shape[-1])
        total = x.new_zeros(())
        for n_fft, hop in self.resolutions:
            mx, my = self._mag(x, n_fft, hop), self._mag(y, n_fft, hop)
            sc = torch.linalg.norm(my - mx, dim=(-2, -1)) / torch.linalg.norm(my, dim=(-2, -1)).clamp_min(self.eps)
            logmag = (mx.log() - my.log()).abs().mean(dim=(-2, -1))
            total = total + (sc + logmag).mean()
        return total / len(self.resolutions)
