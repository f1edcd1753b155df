"""affectfer.nn: Module, Parameter and torch.nn-named layers over the C ops.

    import affectfer.nn as nn
    import affectfer.nn.functional as F
"""
from . import functional, init, utils
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GELU,
                     GroupNorm, Hardsigmoid, Hardswish, Identity, LayerNorm, Linear, LogSigmoid, MaxPool2d, ModuleList,
                     ReLU, Sequential, SiLU, Sigmoid, Softmax, Softplus, Tanh, Upsample)
from .module import Module, Parameter
from .sync_batchnorm import SyncBatchNorm
from .transformer import DropPath, MultiheadAttention, TransformerEncoderLayer

__all__ = ["Module", "Parameter", "functional", "init", "utils", "Identity", "Linear", "Conv2d", "BatchNorm1d",
           "BatchNorm2d", "LayerNorm", "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "MaxPool2d",
           "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Dropout", "Sequential", "ModuleList", "Softplus", "LogSigmoid",
           "Hardswish", "Hardsigmoid", "GroupNorm", "Upsample", "DropPath", "MultiheadAttention", "TransformerEncoderLayer",
           "SyncBatchNorm"]
