"""affectfer.data: datasets, samplers and the threaded C loader."""
from .samplers import (BaggingSampler, ClassBalancedOversampler, RandomSampler, Sampler, SequentialSampler,
                       WeightedRandomSampler, class_inverse_weights)
from .mix import MixAugment, MixedBatch, Mixup, mixaugment_loss, mixup_loss
