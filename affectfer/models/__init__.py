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
from .mobilevit import (LinearSelfAttention, LinearTransformerBlock, MobileViTv2, MobileVitV2Block, mobilevitv2_050,
                        mobilevitv2_075, mobilevitv2_100, mobilevitv2_125, mobilevitv2_150, mobilevitv2_175,
                        mobilevitv2_200)
from .multitask import (AUEmbedding, AUInnerProductHead, FeatureMap, MultiTaskClassifier, MultiTaskIXL, SMMEmotionNet,
                        SinusoidalPositionalEncoding, feature_map, inception_v3_mixed_6e, multitask_ixl,
                        smm_emotionnet)
from .presets import Preprocessing, preprocessing
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .senet import SEBottleneck, SENet, se_resnet50
from .vit import VisionTransformer, vit_b_16

__all__ = ["create", "list_models", "register_model", "ActionUnitHead", "DeviationModule", "ExpressionHead", "LandmarkHead", "SharedTrunk",
           "SoftVotingEnsemble", "ValenceArousalHead", "DAN", "CrossAttentionHead", "dan", "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "freeze_residual_blocks",
           "residual_blocks", "EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth",
           "efficientnet_b0", "stochastic_depth", "GoogLeNet", "GoogLeNetOutputs", "googlenet",
           "MobileViTv2", "MobileVitV2Block", "LinearSelfAttention", "LinearTransformerBlock", "mobilevitv2_050",
           "mobilevitv2_075", "mobilevitv2_100", "mobilevitv2_125", "mobilevitv2_150", "mobilevitv2_175",
           "mobilevitv2_200", "VisionTransformer", "vit_b_16",
           "MultiTaskIXL", "MultiTaskClassifier", "SMMEmotionNet", "AUEmbedding", "AUInnerProductHead",
           "SinusoidalPositionalEncoding", "FeatureMap", "feature_map", "inception_v3_mixed_6e", "multitask_ixl",
           "smm_emotionnet"]
__all__ += ["BasicConv2d", "squeeze_excitation", "Preprocessing", "preprocessing", "SEBottleneck", "SENet", "se_resnet50",
            "Inception3", "InceptionOutputs", "inception_v3"]
