"""affectfer.data: datasets, readers of the public datasets' annotation files (AffectNet, ExpW, ABAW),
packs (pre-decoded memory-mapped datasets), samplers, the threaded C loader and the batch mixers."""
from .datasets import ABAWDataset, ArrayDataset, CSVDataset, Dataset, ImageFolder, crop_to_box
from .readers import (ORDERS, ABAWMTLDataset, AffectNetDataset, ConcatDataset, ExpWDataset, mtl_targets, remap_labels,
                      remap_table)
from .loader import Loader, read_image
from .pack import PackedDataset, pack
from .mix import MixAugment, MixedBatch, Mixup, mixaugment_loss, mixup_loss
from .samplers import (BaggingSampler, ClassBalancedOversampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler,
                       WeightedRandomSampler, class_inverse_weights)
from .views import TwoViewDataset, TwoViewLoader
