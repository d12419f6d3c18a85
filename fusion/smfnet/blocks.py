"""The layers SMFNet's modules share: channel LayerNorm, the two transposed self-attentions (MDTA,
CDDFuse's AttentionBase), the two feed-forwards (LeFF, FFN), the two transformer blocks built from
them (TB, TBase), the inverted residual block (IRB) and the gradient residual dense block (GRDB)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOBEL = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of (B, C, H, W) (eps 1e-5, with bias)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def transposed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                         temperature: torch.Tensor) -> torch.Tensor:
    """Restormer's attention across channels: per head, softmax(q^ k^T * tau) v where q^, k^ are
    L2-normalised over pixels, so the attention map is (C/heads)^2 whatever the image size."""
    b, c, h, w = q.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, heads, t.shape[1] // heads, h * w)

    channels_out = v.shape[1]
    q, k, v = split(q), split(k), split(v)
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * temperature).softmax(dim=-1)
    return (attn @ v).reshape(b, channels_out, h, w)


class MDTA(nn.Module):
    """Multi-Dconv-head transposed attention: 1x1 C -> 3C, depthwise 3x3, attention, 1x1 (no biases)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=False)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(transposed_attention(q, k, v, self.heads, self.temperature))


class AttentionBase(nn.Module):
    """CDDFuse's attention: as MDTA but a full 3x3 convolution 3C -> 3C instead of the depthwise one."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.qkv_conv = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, bias=False)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_conv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(transposed_attention(q, k, v, self.heads, self.temperature))


class CrossAttention(nn.Module):
    """Transposed attention with queries from a guide and keys/values from a source (biases on)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(channels, channels, 1)
        self.q_dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.kv = nn.Conv2d(channels, 2 * channels, 1)
        self.kv_dwconv = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels)
        self.project_out = nn.Conv2d(channels, channels, 1)

    def forward(self, guide: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        q = self.q_dwconv(self.q(guide))
        k, v = self.kv_dwconv(self.kv(source)).chunk(2, dim=1)
        return self.project_out(transposed_attention(q, k, v, self.heads, self.temperature))


class LeFF(nn.Module):
    """Locally-enhanced feed-forward: 1x1, depthwise 3x3, 1x1, each followed by GELU, plus its input."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.depthwise(F.gelu(self.expand(x))))
        return F.gelu(self.project(y)) + x


class FeedForward(nn.Module):
    """1x1 C -> hidden, GELU, 1x1 back (no biases)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.gelu(self.expand(x)))


class TransformerBlock(nn.Module):
    """TB: x += MDTA(LN x); x += LeFF(LN x)."""

    def __init__(self, channels: int, heads: int, leff_hidden: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = MDTA(channels, heads)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = LeFF(channels, leff_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class TransformerBase(nn.Module):
    """TBase (CDDFuse): x += AttentionBase(LN x); x += FFN(LN x)."""

    def __init__(self, channels: int, heads: int, ffn_hidden: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = AttentionBase(channels, heads)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = FeedForward(channels, ffn_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class InvertedResidualBlock(nn.Module):
    """IRB (MobileNetV2 without BN or shortcut): 1x1 expand, ReLU6, reflect-padded depthwise 3x3,
    ReLU6, 1x1 project; no biases."""

    def __init__(self, channels_in: int, channels_out: int, expand: int):
        super().__init__()
        hidden = channels_in * expand
        self.expand = nn.Conv2d(channels_in, hidden, 1, bias=False)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False)
        self.project = nn.Conv2d(hidden, channels_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x))
        y = F.relu6(self.depthwise(F.pad(y, (1, 1, 1, 1), mode="reflect")))
        return self.project(y)


class GRDB(nn.Module):
    """Gradient residual dense block after a conv3x3 + LeakyReLU(0.2): a two-layer dense path and a
    trainable depthwise Sobel path (|gx| + |gy|, initialised to Sobel), each closed by a 1x1 conv,
    summed and passed through LeakyReLU(0.1)."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.dense1 = nn.Conv2d(c, c, 3, padding=1)
        self.dense2 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.dense_out = nn.Conv2d(3 * c, c, 1)
        self.sobel_x = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.sobel_y = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.gradient_out = nn.Conv2d(c, c, 1)
        with torch.no_grad():
            kernel = torch.tensor(SOBEL)
            self.sobel_x.weight.copy_(kernel.expand_as(self.sobel_x.weight))
            self.sobel_y.weight.copy_(kernel.t().expand_as(self.sobel_y.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv(x), 0.2)
        a = F.leaky_relu(self.dense1(x), 0.2)
        b = F.leaky_relu(self.dense2(torch.cat((x, a), dim=1)), 0.2)
        dense = self.dense_out(torch.cat((x, a, b), dim=1))
        gradient = self.gradient_out(self.sobel_x(x).abs() + self.sobel_y(x).abs())
        return F.leaky_relu(dense + gradient, 0.1)
