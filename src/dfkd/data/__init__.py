"""Data: a corpus on disk -> (noisy, clean) pairs -> torch Datasets.

``layouts`` finds the pairs of every supported layout (VoiceBank-DEMAND, DNS Challenge, folder
pairs, manifest), ``datasets`` turns them into training and test Datasets, ``dns`` mixes DNS
Challenge clean speech and noise on the fly, ``demo`` builds the offline demo corpus.
"""

from .datasets import SegmentDataset, UtteranceDataset, scan_pairs, training_dataset
from .layouts import Pair, corpus_pairs, detect_layout

__all__ = ["Pair", "SegmentDataset", "UtteranceDataset", "corpus_pairs", "detect_layout",
           "scan_pairs", "training_dataset"]
