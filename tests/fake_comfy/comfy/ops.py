"""Stand-in for comfy.ops.disable_weight_init: torch layers that cast their weights to the
input's device and dtype at each call once ``comfy_cast_weights`` is set."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CastWeightBiasOp:
    comfy_cast_weights = False
    weight_function: list = []
    bias_function: list = []


def cast_bias_weight(s, x):
    weight = s.weight.to(x.device, x.dtype) if s.weight is not None else None
    bias = s.bias.to(x.device, x.dtype) if s.bias is not None else None
    return weight, bias


class disable_weight_init:
    class Linear(torch.nn.Linear, CastWeightBiasOp):
        def forward(self, x):
            if self.comfy_cast_weights:
                return F.linear(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class Conv1d(torch.nn.Conv1d, CastWeightBiasOp):
        def forward(self, x):
            if self.comfy_cast_weights:
                return self._conv_forward(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class Conv2d(torch.nn.Conv2d, CastWeightBiasOp):
        def forward(self, x):
            if self.comfy_cast_weights:
                return self._conv_forward(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class Conv3d(torch.nn.Conv3d, CastWeightBiasOp):
        def forward(self, x):
            if self.comfy_cast_weights:
                return self._conv_forward(x, *cast_bias_weight(self, x))
            return super().forward(x)

    class GroupNorm(torch.nn.GroupNorm, CastWeightBiasOp):
        def forward(self, x):
            if self.comfy_cast_weights:
                return F.group_norm(x, self.num_groups, *cast_bias_weight(self, x), self.eps)
            return super().forward(x)

    class LayerNorm(torch.nn.LayerNorm, CastWeightBiasOp):
        def forward(self, x):
            if self.comfy_cast_weights and self.weight is not None:
                return F.layer_norm(x, self.normalized_shape, *cast_bias_weight(self, x), self.eps)
            return super().forward(x)
