"""The data pipeline: source -> decode/resample -> text -> filter -> bucket -> collate (docs/data.md).

`build_loader` is the entry point; the modules, in the order data flows through them:
`sources` (rows from the Hub, parquet or a "ready" folder), `audio` (decode, mono, resample),
`samples` (one row -> one sample: text ids, checks, prompt via `conditioning`), `filters` (reasons
and counts), `stream` (one worker's blocks, windows and exact position), `batching` (buckets and
the padded `Batch`), `pipeline` (workers, ranks, resume).
"""
from amh.data.batching import Batch
from amh.data.filters import FilterStats, Reason
from amh.data.pipeline import DataError, Loader, build_loader
from amh.data.sources import SourceError

__all__ = ["Batch", "DataError", "FilterStats", "Loader", "Reason", "SourceError", "build_loader"]
