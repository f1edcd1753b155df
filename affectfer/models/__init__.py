"""affectfer.models: architectures with torchvision's module structure and parameter names, so
published checkpoints load with load_state_dict."""
from .dan import DAN, CrossAttentionHead, dan
from .heads import (ActionUnitHead, DeviationModule, ExpressionHead, LandmarkHead, SharedTrunk,
                    SoftVotingEnsemble, ValenceArousalHead)
from .blocks import BasicConv2d, SqueezeExcitation, squeeze_excitation
from .efficientnet import EfficientNet, MBConv, StochasticDepth, efficientnet_b0, stochastic_depth
from .factory import create, list_models, register_model
from .freeze import freeze_residual_blocks, residual_blocks
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .inception import Inception3, InceptionOutputs, inception_v3
from .presets import Preprocessing, preprocessing
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .senet import SEBottleneck, SENet, se_resnet50

__all__ = ["create", "list_models", "register_model", "ActionUnitHead", "DeviationModule", "ExpressionHead", "LandmarkHead", "SharedTrunk",
           "SoftVotingEnsemble", "ValenceArousalHead", "DAN", "CrossAttentionHead", "dan", "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "freeze_residual_blocks",
           "residual_blocks", "EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth",
           "efficientnet_b0", "stochastic_depth", "GoogLeNet", "GoogLeNetOutputs", "googlenet"]
__all__ += ["BasicConv2d", "squeeze_excitation", "Preprocessing", "preprocessing", "SEBottleneck", "SENet", "se_resnet50",
            "Inception3", "InceptionOutputs", "inception_v3"]
