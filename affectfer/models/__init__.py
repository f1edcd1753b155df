"""affectfer.models: architectures with torchvision's module structure and parameter names, so
published checkpoints load with load_state_dict."""
from .dan import DAN, CrossAttentionHead, dan
from .heads import (ActionUnitHead, DeviationModule, ExpressionHead, LandmarkHead, SharedTrunk,
                    SoftVotingEnsemble, ValenceArousalHead)
from .efficientnet import EfficientNet, MBConv, SqueezeExcitation, StochasticDepth, efficientnet_b0, stochastic_depth
from .factory import create, list_models, register_model
from .freeze import freeze_residual_blocks, residual_blocks
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .mobilevit import (LinearSelfAttention, LinearTransformerBlock, MobileViTv2, MobileVitV2Block, mobilevitv2_050,
                        mobilevitv2_075, mobilevitv2_100, mobilevitv2_125, mobilevitv2_150, mobilevitv2_175,
                        mobilevitv2_200)
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .vit import VisionTransformer, vit_b_16

__all__ = ["create", "list_models", "register_model", "ActionUnitHead", "DeviationModule", "ExpressionHead", "LandmarkHead", "SharedTrunk",
           "SoftVotingEnsemble", "ValenceArousalHead", "DAN", "CrossAttentionHead", "dan", "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "freeze_residual_blocks",
           "residual_blocks", "EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth",
           "efficientnet_b0", "stochastic_depth", "GoogLeNet", "GoogLeNetOutputs", "googlenet",
           "MobileViTv2", "MobileVitV2Block", "LinearSelfAttention", "LinearTransformerBlock", "mobilevitv2_050",
           "mobilevitv2_075", "mobilevitv2_100", "mobilevitv2_125", "mobilevitv2_150", "mobilevitv2_175",
           "mobilevitv2_200", "VisionTransformer", "vit_b_16"]
