"""Graph reasoning (GR) across modalities, after IGNet's CasGNN: multi-scale nodes per modality from
dilated convolutions, cross-modal edges between same-scale nodes, gated message passing with a
ConvGRU inside each modality, and a read-out per modality plus their merge F_graph."""
from __future__ import annotations

import torch
from torch import nn

from fusion.smfnet.config import SMFNetConfig


def conv_bn_relu(channels_in: int, channels_out: int, dilation: int = 1) -> nn.Sequential:
    """conv3x3 (no bias, 'same' padding at any dilation) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(channels_out), nn.ReLU())


class ConvGRUCell(nn.Module):
    """1x1 ConvGRU: [r, u] = sigmoid(W[m, h]); h~ = tanh(W'[m, r h]); h' = (1 - u) h + u h~.
    Weights start at N(0, 0.01) (biases keep PyTorch's default), as released."""

    def __init__(self, channels: int):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.candidate = nn.Conv2d(2 * channels, channels, 1)
        with torch.no_grad():
            self.gates.weight.normal_(0.0, 0.01)
            self.candidate.weight.normal_(0.0, 0.01)

    def forward(self, message: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        reset, update = torch.sigmoid(self.gates(torch.cat((message, hidden), dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat((message, reset * hidden), dim=1)))
        return (1 - update) * hidden + update * candidate


class NodePropagation(nn.Module):
    """One message-passing step among one modality's nodes, every node from the same input.

    Edge k of node i: e_k = w_k . (h_i - h_jk) over its neighbours j_1 < j_2 < ... (grouped 1x1,
    no bias). The release lays the gates out so that channel c of neighbour n is gated by
    e_((n C + c) mod (N - 1)); with two neighbours and even C that is e_(c mod 2) for both. The
    message m_i = sum_n h_jn * gate is fed with h_i to the ConvGRU; node = h_i + gamma * h'.
    """

    def __init__(self, nodes: int, channels: int):
        super().__init__()
        self.nodes = nodes
        self.edge = nn.Conv2d(channels * (nodes - 1), nodes - 1, 1, groups=nodes - 1, bias=False)
        self.gru = ConvGRUCell(channels)
        self.gamma = nn.Parameter(torch.zeros(1))
        neighbours = nodes - 1
        self.register_buffer("gate_index", torch.arange(neighbours * channels).remainder(neighbours)
                             .view(neighbours, channels), persistent=False)

    def forward(self, nodes: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, h in enumerate(nodes):
            others = [nodes[j] for j in range(self.nodes) if j != i]
            edges = self.edge(torch.cat([h - o for o in others], dim=1))  # (B, N-1, H, W)
            gates = torch.sigmoid(edges)
            message = sum(o * gates[:, self.gate_index[n]] for n, o in enumerate(others))
            out.append(self.gru(message, h) * self.gamma + h)
        return out


class GraphReasoning(nn.Module):
    """(Phi_S^I, Phi_S^V) -> (Phi_G^I, Phi_G^V); :meth:`merge` gives F_graph from them."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        c, n = config.channels, len(config.dilations)
        self.edge_rounds = config.edge_rounds
        self.iterations = config.graph_iterations
        self.nodes_ir = nn.ModuleList(conv_bn_relu(c, c, d) for d in config.dilations)
        self.nodes_vi = nn.ModuleList(conv_bn_relu(c, c, d) for d in config.dilations)
        self.edge_to_vi = nn.Conv2d(c, 1, 1, bias=False)  # P0: gates the IR node into the VIS node
        self.edge_to_ir = nn.Conv2d(c, 1, 1, bias=False)  # P1: gates the VIS node into the IR node
        self.propagate_ir = NodePropagation(n, c)
        self.propagate_vi = NodePropagation(n, c)
        self.readout_ir = conv_bn_relu(n * c, c)
        self.readout_vi = conv_bn_relu(n * c, c)
        self.merge_conv = nn.Conv2d(2 * c, c, 1)

    def cross_edges(self, c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c' = c + d sig(P1(d - c)), d' = d + c sig(P0(c - d)), both from the old pair."""
        return (c + d * torch.sigmoid(self.edge_to_ir(d - c)),
                d + c * torch.sigmoid(self.edge_to_vi(c - d)))

    def forward(self, shallow_ir: torch.Tensor, shallow_vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ir = [node(shallow_ir) for node in self.nodes_ir]
        vi = [node(shallow_vi) for node in self.nodes_vi]
        for k in range(len(ir)):
            for _ in range(self.edge_rounds):
                ir[k], vi[k] = self.cross_edges(ir[k], vi[k])
        for _ in range(self.iterations):
            ir, vi = self.propagate_ir(ir), self.propagate_vi(vi)
        return self.readout_ir(torch.cat(ir, dim=1)), self.readout_vi(torch.cat(vi, dim=1))

    def merge(self, graph_ir: torch.Tensor, graph_vi: torch.Tensor) -> torch.Tensor:
        """F_graph = 1x1 2C -> C on [Phi_G^I, Phi_G^V]."""
        return self.merge_conv(torch.cat((graph_ir, graph_vi), dim=1))
