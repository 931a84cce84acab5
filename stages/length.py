"""``length``: drop empty and huge documents before anything expensive looks at them."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from datapipe.schema import set_column
from datapipe.stage import Filter, StageError, reasons_from_masks, register


@register
class LengthFilter(Filter):
    """Adds ``len_chars`` (characters of ``text``); drops texts outside [min_chars, max_chars].

    Reasons: ``length_v1:too_short``, ``length_v1:too_long``. Cost: one vectorised pass.
    """

    name = "length"
    inputs = ("text",)
    outputs = ("len_chars",)

    def __init__(self, *, min_chars: int = 1, max_chars: int = 1_000_000):
        if min_chars < 0 or max_chars <= min_chars:
            raise StageError(f"need 0 <= min_chars < max_chars, got {min_chars}, {max_chars}")
        self.min_chars, self.max_chars = min_chars, max_chars

    def score(self, batch: pa.Table) -> pa.Table:
        n = pc.fill_null(pc.utf8_length(batch["text"]), 0).cast(pa.int64())
        return set_column(batch, "len_chars", n)

    def decide(self, batch: pa.Table) -> pa.Array:
        n = batch["len_chars"].to_numpy()
        return reasons_from_masks(batch.num_rows, [
            ("length_v1:too_short", n < self.min_chars),
            ("length_v1:too_long", n > self.max_chars),
        ])
