"""affectfer.models: architectures with torchvision's module structure and parameter names, so
published checkpoints load with load_state_dict."""
from .dan import DAN, CrossAttentionHead, dan
from .heads import (ActionUnitHead, DeviationModule, ExpressionHead, LandmarkHead, SharedTrunk,
                    SoftVotingEnsemble, ValenceArousalHead)
from .efficientnet import EfficientNet, MBConv, SqueezeExcitation, StochasticDepth, efficientnet_b0, stochastic_depth
from .factory import create, list_models, register_model
from .freeze import freeze_residual_blocks, residual_blocks
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .multitask import (AUEmbedding, AUInnerProductHead, FeatureMap, MultiTaskClassifier, MultiTaskIXL, SMMEmotionNet,
                        SinusoidalPositionalEncoding, feature_map, inception_v3_mixed_6e, multitask_ixl,
                        smm_emotionnet)
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

__all__ = ["create", "list_models", "register_model", "ActionUnitHead", "DeviationModule", "ExpressionHead", "LandmarkHead", "SharedTrunk",
           "SoftVotingEnsemble", "ValenceArousalHead", "DAN", "CrossAttentionHead", "dan", "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "freeze_residual_blocks",
           "residual_blocks", "EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth",
           "efficientnet_b0", "stochastic_depth", "GoogLeNet", "GoogLeNetOutputs", "googlenet",
           "MultiTaskIXL", "MultiTaskClassifier", "SMMEmotionNet", "AUEmbedding", "AUInnerProductHead",
           "SinusoidalPositionalEncoding", "FeatureMap", "feature_map", "inception_v3_mixed_6e", "multitask_ixl",
           "smm_emotionnet"]
