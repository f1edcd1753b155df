"""affectfer.models: architectures with torchvision's module structure and parameter names, so
published checkpoints load with load_state_dict."""
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50"]
