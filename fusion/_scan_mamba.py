"""mamba-ssm's compiled selective-scan kernel (``selective_scan_cuda``), loaded on its own.

Only the extension module is imported, never ``mamba_ssm``'s package ``__init__`` (which pulls in
triton kernels, transformers and more, any of which can fail for reasons unrelated to the scan).
The outcome of the import is decided once per process and cached; why it failed is logged once.
"""
from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

import torch

MODULE = "selective_scan_cuda"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MambaKernel:
    """The import's outcome: ``module`` when it loaded; otherwise ``installed`` says whether the
    module exists (and failed to load: ``error``) or is simply not there."""

    module: ModuleType | None
    installed: bool
    error: str | None

    @property
    def state(self) -> str:
        """'loaded', 'broken' or 'absent': what reports record."""
        return "loaded" if self.module is not None else "broken" if self.installed else "absent"


@functools.cache
def load_kernel() -> MambaKernel:
    """Import ``selective_scan_cuda`` once; a missing module and a module that fails to load are
    told apart (ModuleNotFoundError for this very name means 'not installed')."""
    try:
        module = importlib.import_module(MODULE)
    except ModuleNotFoundError as error:
        if error.name == MODULE:
            log.info("mamba-ssm's compiled scan kernel (%s) is not installed", MODULE)
            return MambaKernel(None, False, None)
        return _broken(error)
    except Exception as error:  # noqa: BLE001 - any failure of a present module is reported
        return _broken(error)
    return MambaKernel(module, True, None)


def _broken(error: Exception) -> MambaKernel:
    message = f"{type(error).__name__}: {error}"
    log.warning("mamba-ssm's compiled scan kernel (%s) is installed but fails to load: %s",
                MODULE, message)
    return MambaKernel(None, True, message)


class MambaScan(torch.autograd.Function):
    """mamba-ssm's kernel without the gate z. The kernel takes delta, B and C in u's dtype,
    A, D and delta_bias in float32, B and C as (batch, G, N, L); its backward has no input for a
    gradient of the last state, so one that is not zero is an error rather than dropped.
    Gradients come back in the kernel's dtypes; autograd casts them to the inputs' dtypes."""

    @staticmethod
    def forward(ctx, kernel, u, delta, A, B, C, D, delta_bias, softplus):
        shapes = {"B": B.shape, "C": C.shape}
        B, C = (x.unsqueeze(1) if x.dim() == 3 else x for x in (B, C))
        u = u.contiguous()
        delta, B, C = (x.to(u.dtype).contiguous() for x in (delta, B, C))
        A = A.float().contiguous()
        D, delta_bias = (None if x is None else x.float().contiguous() for x in (D, delta_bias))
        out, states, *_ = kernel.fwd(u, delta, A, B, C, D, None, delta_bias, softplus)
        ctx.set_materialize_grads(False)
        ctx.kernel, ctx.softplus, ctx.shapes = kernel, softplus, shapes
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, states)
        return out, states[:, :, -1, 1::2]  # the last state: odd entries of the last chunk

    @staticmethod
    def backward(ctx, dout, dlast):
        if dlast is not None and bool(dlast.any()):
            raise NotImplementedError("mamba-ssm's scan kernel cannot back-propagate a gradient of "
                                      "the last state; use the Triton or CPU scan")
        u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
        dout = torch.zeros_like(u) if dout is None else dout.contiguous()
        du, ddelta, dA, dB, dC, dD, dbias, *_ = ctx.kernel.bwd(
            u, delta, A, B, C, D, None, delta_bias, dout, states, None, None, ctx.softplus, False)
        grads = (du, ddelta, dA, dB.reshape(ctx.shapes["B"]), dC.reshape(ctx.shapes["C"]),
                 None if D is None else dD, None if delta_bias is None else dbias)
        return (None, *grads, None)
