"""ONIX for Books: read ONIX 3.x, write 3.0/3.1 (and 2.1), validate while streaming, deltas.

Modules: ``reader`` (ONIX -> works), ``writer``/``writer21`` (works -> ONIX, streaming),
``validate`` (bundled XSD per product + recipient rules, in a second process), ``rules``
(what one recipient wants), ``profile`` (onixcheck's recipient profiles, per product),
``delta`` (content hashes -> what to send), ``feed`` (all of it for one recipient), ``codes``
(code-list mappings), ``tags`` (versions, namespaces, short tags), ``synthetic`` (a generated
catalogue for tests and the benchmark).
"""

from .delta import DeltaPlan, DeltaTracker, compute_delta
from .feed import FeedResult, compress, remove_skipped, write_feed
from .reader import OnixRecord, iter_onix_records, read_onix_works
from .rules import Compression, FeedMode, RecipientRules
from .tags import OnixVersion, TagStyle
from .validate import Problem, ValidationReport, ValidatorProcess, validate_file
from .writer import MessageHeader, OnixWriter, WrittenProduct, record_reference
from .writer21 import Onix21Writer

__all__ = [
    "Compression",
    "DeltaPlan",
    "DeltaTracker",
    "FeedMode",
    "FeedResult",
    "MessageHeader",
    "Onix21Writer",
    "OnixRecord",
    "OnixVersion",
    "OnixWriter",
    "Problem",
    "RecipientRules",
    "TagStyle",
    "ValidationReport",
    "ValidatorProcess",
    "WrittenProduct",
    "compress",
    "compute_delta",
    "iter_onix_records",
    "read_onix_works",
    "record_reference",
    "remove_skipped",
    "validate_file",
    "write_feed",
]
