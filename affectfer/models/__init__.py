"""affectfer.models: architectures with torchvision's module structure and parameter names, so
published checkpoints load with load_state_dict."""
from .dan import DAN, CrossAttentionHead, dan
from .heads import (ActionUnitHead, DeviationModule, ExpressionHead, LandmarkHead, SharedTrunk,
                    SoftVotingEnsemble, ValenceArousalHead)
from .factory import create, list_models, register_model
from .freeze import freeze_residual_blocks, residual_blocks
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

__all__ = ["create", "list_models", "register_model", "ActionUnitHead", "DeviationModule", "ExpressionHead", "LandmarkHead", "SharedTrunk",
           "SoftVotingEnsemble", "ValenceArousalHead", "DAN", "CrossAttentionHead", "dan", "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "freeze_residual_blocks",
           "residual_blocks"]
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet  # noqa: E402

register_model("googlenet", googlenet)
__all__ += ["GoogLeNet", "GoogLeNetOutputs", "googlenet"]
