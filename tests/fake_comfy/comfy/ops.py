"""Stand-in for comfy.ops.disable_weight_init: torch layers that cast their weights to the
input's device and dtype at each call once ``comfy_cast_weights`` is set, and apply the host's
patches (``weight_function`` / ``bias_function``, lists of tensor -> tensor) to the cast copies
whenever there are any, as the real ones do."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CastWeightBiasOp:
    comfy_cast_weights = False
    weight_function: list = []
    bias_function: list = []

    def _casts(self) -> bool:
        return bool(self.comfy_cast_weights or self.weight_function or self.bias_function)


def cast_bias_weight(s, x):
    weight = s.weight.to(x.device, x.dtype, copy=bool(s.weight_function)) if s.weight is not None else None
    bias = s.bias.to(x.device, x.dtype, copy=bool(s.bias_function)) if s.bias is not None else None
    for f in s.weight_function:
        weight = f(weight)
    for f in s.bias_function:
        bias = f(bias)
    return weight, bias


class disable_weight_init:
    class Linear(torch.nn.Linear, CastWeightBiasOp):
        def forward(self, x):
            if self._casts():
                return F.linear(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class Conv1d(torch.nn.Conv1d, CastWeightBiasOp):
        def forward(self, x):
            if self._casts():
                return self._conv_forward(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class Conv2d(torch.nn.Conv2d, CastWeightBiasOp):
        def forward(self, x):
            if self._casts():
                return self._conv_forward(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class Conv3d(torch.nn.Conv3d, CastWeightBiasOp):
        def forward(self, x):
            if self._casts():
                return self._conv_forward(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class GroupNorm(torch.nn.GroupNorm, CastWeightBiasOp):
        def forward(self, x):
            if self._casts():
                return F.group_norm(x, self.num_groups, *cast_bias_weight(self, x), self.eps)
            return super().forward(x)

    class LayerNorm(torch.nn.LayerNorm, CastWeightBiasOp):
        def forward(self, x):
            if self._casts() and self.weight is not None:
                return F.layer_norm(x, self.normalized_shape, *cast_bias_weight(self, x), self.eps)
            return super().forward(x)
