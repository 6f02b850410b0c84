"""Matrix multiplications in bfloat16 with float32 everywhere else, for CPUs where bfloat16 products pay.

At the embedded default's size a generation step is a handful of small matrix products per patch. On a CPU they are
bound by memory traffic (the backbone's one-token steps read every weight once per patch) or by multiply throughput
(LocDiT's short sequences). CPUs with AVX512-BF16 multiply bfloat16 at twice the float32 rate and read half the bytes,
so the linears of the transformers gain from it (measured on AMD Zen 5); with AMX (Intel Xeon) the products were slower
than float32 ones, so "auto" leaves those CPUs in float32 (`cpu_multiplies_bfloat16`). Norms, softmax attention,
residual sums and the KV cache stay in float32, where bfloat16 rounding would accumulate over layers and patches.

`LowPrecisionLinear` is an `nn.Linear` (same parameters, same state dict, still float32) that, when no gradient is
needed, multiplies with a copy of its weight and bias in `matmul_dtype` and returns its output in the input's dtype.
Only float32 weights are multiplied so: a model moved to another dtype (`pipe.to(torch.float64)`, float16) multiplies
in its own dtype, as a model without the setting does, and takes the bfloat16 products again back in float32.
The copy is refreshed whenever the float32 parameters change: in place (an optimiser step, `load_state_dict`, anything
under `torch.no_grad()`), by being replaced, or by moving the module. Writes through `.data` bypass the version counter
this relies on, as do in-place writes to weights that were created under `torch.inference_mode()` (they have no
version counter); after such a write, `set_matmul_dtype` again makes fresh copies. With autograd it is a plain
`nn.Linear`, so training is unchanged.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

# dtypes a linear may multiply in; float32 means "as stored" (the plain nn.Linear)
MATMUL_DTYPES = (torch.float32, torch.bfloat16)

# torch multiplies bfloat16 on the CPU with oneDNN, which keeps a prepared kernel (about 0.6 MB at the default model's
# size) for every input shape it meets, up to 1024 of them in each of two caches. Generation meets new shapes with
# every prompt, text and batch length, so a long-running process (a server) grew by some 0.6 GB. 128 entries hold the
# 40-odd shapes of a call; 64 measured no slower than the unbounded caches in a long run of varied calls.
ONEDNN_SHAPE_CACHE_ENTRIES = 128


def bound_onednn_shape_caches() -> None:
    """Cap oneDNN's per-shape caches (see `ONEDNN_SHAPE_CACHE_ENTRIES`), unless the environment already sets them.
    oneDNN reads the variables when the process runs its first bfloat16 product, so this must come before that."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(ONEDNN_SHAPE_CACHE_ENTRIES))


class LowPrecisionLinear(nn.Linear):
    """`nn.Linear` that multiplies in `matmul_dtype` without autograd (see the module docstring). Made from an
    `nn.Linear` in place by `set_linear_matmul_dtype`, never constructed directly."""

    matmul_dtype: torch.dtype = torch.bfloat16
    _low_precision_key: tuple | None = None
    _low_precision_weight: torch.Tensor | None = None
    _low_precision_bias: torch.Tensor | None = None

    def _parameters_key(self) -> tuple:
        return (self.matmul_dtype, *tensor_key(self.weight), *tensor_key(self.bias))

    def low_precision_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias in `matmul_dtype`, copied again only after the float32 ones changed."""
        key = self._parameters_key()
        if key != self._low_precision_key:
            with torch.no_grad():
                self._low_precision_weight = self.weight.detach().to(self.matmul_dtype)
                self._low_precision_bias = None if self.bias is None else self.bias.detach().to(self.matmul_dtype)
            self._low_precision_key = key
        return self._low_precision_weight, self._low_precision_bias

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # bfloat16 products save time only against float32 ones: float64 weights would lose their precision, and
        # half-precision weights multiply in their own dtype
        if (
            self.weight.dtype != torch.float32
            or self.matmul_dtype == torch.float32
            or (torch.is_grad_enabled() and (self.weight.requires_grad or input.requires_grad))
        ):
            return F.linear(input, self.weight, self.bias)
        if torch.compiler.is_compiling():
            # traced code cannot read the copies' key (addresses break the graph): cast inline, never stale
            weight = self.weight.to(self.matmul_dtype)
            bias = None if self.bias is None else self.bias.to(self.matmul_dtype)
        else:
            weight, bias = self.low_precision_parameters()
        return F.linear(input.to(weight.dtype), weight, bias).to(input.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, matmul_dtype={self.matmul_dtype}"


def linear_matmul_dtype(module: nn.Module) -> torch.dtype:
    """The dtype `set_linear_matmul_dtype` last gave the linears inside `module` (what they multiply in while their
    weights are float32): that of its first low-precision linear, float32 when it has none."""
    return next((m.matmul_dtype for m in module.modules() if isinstance(m, LowPrecisionLinear)), torch.float32)


def tensor_key(tensor: torch.Tensor | None) -> tuple:
    """Address and version counter: both change whenever the tensor is replaced or written in place. Tensors made under
    `torch.inference_mode()` have no version counter; for them only a replacement is seen."""
    if tensor is None:
        return (None, None)
    return (tensor.data_ptr(), None if tensor.is_inference() else tensor._version)


def is_plain_linear(module: nn.Module) -> bool:
    """An `nn.Linear` whose `forward` is the stock one or the low-precision one (no adapter, no quantised layer):
    fast inference paths call its `forward` directly."""
    return type(module) in (nn.Linear, LowPrecisionLinear)


def set_linear_matmul_dtype(module: nn.Module, dtype: torch.dtype) -> int:
    """Make every plain `nn.Linear` inside `module` multiply in `dtype` (bfloat16), or back to a plain `nn.Linear`
    (float32). Parameters and state dict are untouched. Returns how many linears were switched."""
    if dtype not in MATMUL_DTYPES:
        names = ", ".join(str(d) for d in MATMUL_DTYPES)
        raise ValueError(f"matmul dtype {dtype} is not supported; use one of {names}.")
    if dtype == torch.bfloat16:
        bound_onednn_shape_caches()
    switched = 0
    for submodule in module.modules():
        if not is_plain_linear(submodule):
            continue
        if dtype == torch.float32:
            if type(submodule) is LowPrecisionLinear:
                submodule.__class__ = nn.Linear
                for name in ("matmul_dtype", "_low_precision_key", "_low_precision_weight", "_low_precision_bias"):
                    submodule.__dict__.pop(name, None)
                switched += 1
        else:
            submodule.__class__ = LowPrecisionLinear
            submodule.matmul_dtype = dtype
            submodule._low_precision_key = None
            switched += 1
    return switched


def matmul_dtype_setting(matmul_dtype: torch.dtype | str | None) -> str | None:
    """A matmul dtype as a pipeline keeps it: None (leave the model as it is), "auto", "float32" or "bfloat16", from
    those names or a torch dtype. Anything else is refused with the choices."""
    if matmul_dtype is None or matmul_dtype == "auto":
        return matmul_dtype
    names = {torch.float32: "float32", torch.bfloat16: "bfloat16"}
    name = names.get(matmul_dtype) if isinstance(matmul_dtype, torch.dtype) else matmul_dtype
    if name not in names.values():
        raise ValueError(
            f"matmul_dtype {matmul_dtype!r} is not supported: pass 'auto' (bfloat16 on CPUs where its products "
            "pay), torch.bfloat16 or torch.float32."
        )
    return name


def resolve_matmul_dtype(matmul_dtype: torch.dtype | str | None, model: nn.Module) -> torch.dtype:
    """The dtype `model`'s linears should multiply in: "auto" is bfloat16 for a float32 model on a CPU where bfloat16
    products pay (`cpu_multiplies_bfloat16`) and float32 otherwise; None is float32 (see `matmul_dtype_setting` for the
    accepted values)."""
    setting = matmul_dtype_setting(matmul_dtype)
    if setting == "auto":
        parameter = next(model.parameters())
        native = parameter.device.type == "cpu" and parameter.dtype == torch.float32 and cpu_multiplies_bfloat16()
        return torch.bfloat16 if native else torch.float32
    return torch.bfloat16 if setting == "bfloat16" else torch.float32


def cpu_multiplies_bfloat16() -> bool:
    """Whether bfloat16 linears pay on this CPU ("auto" picks them there): x86 with native AVX512-BF16 and without
    AMX. Measured with this package's models (2 threads): on AMD Zen 5 (AVX512-BF16, no AMX) they are faster than
    float32 ones; on an Intel Xeon with AMX they were slower (one sentence 1.3 times the float32 time, a batch of 4
    about level), also with oneDNN kept off the AMX kernels, so probably because converting the small products' inputs
    to bfloat16 and back costs more than the faster multiply saves there; without native bfloat16 they are emulated
    and slower."""
    try:
        capabilities = torch.cpu.get_capabilities()
    except Exception:  # an older torch or an unknown platform: assume not
        return False
    return bool(capabilities.get("avx512_bf16")) and not capabilities.get("amx_bf16")
