"""datatrove's side of ``bench/vs_datatrove.py``; runs inside ``bench/.venv-datatrove``.

usage: python _datatrove_pipeline.py SPEC.json

SPEC: {"input": dir of *.warc.gz, "work": dir, "workers": 2, "languages": ["en"],
"threshold": 0.65, "lid_model": path to lid.176.ftz, "lists": ../shared/data/lists,
"dedup": bool}. The pipeline is FineWeb's, without the URL filter and the bad-words
filter (datapipe's comparison config has neither):

    WarcReader -> Trafilatura -> LanguageFilter -> GopherRepetition -> GopherQuality
    -> C4Quality -> FineWebQuality -> JsonlWriter
    [-> MinhashDedupSignature; Buckets; Cluster; JsonlReader -> MinhashDedupFilter -> JsonlWriter]

Each tool keeps its own recommended settings (datatrove's trafilatura: favour_precision,
deduplicate, 1 s timeout in a sandbox process), except where a threshold would make
the comparison meaningless: FineWeb's char_duplicates_ratio is 0.1 (datapipe's and
FineWeb's paper value; datatrove's code default is 0.01), as in ``bench/filters.py``.

Between steps a tiny ``_IdLog`` step records the ids that reach it, so the driver can
tell which stage dropped each document (cost: one list append per document).
Step times are made CPU seconds, to compare with datapipe's per-stage CPU seconds on a shared
machine: datatrove's ``TimingStats`` (``perf_counter``) is patched to ``process_time``, plus,
for the extractor, the CPU its sandbox child process spent on the document (read from
/proc/<pid>/stat before and after each document; clock-tick resolution, but the deltas add
up to the child's total). The end-to-end figures do not depend on this patch.
Writes WORK/result.json: wall seconds per executor stage.
"""
from __future__ import annotations

import json
import os
import sys
import time


_CHILD = {"cpu": 0.0}
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        f = fh.read().rsplit(b")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / _TICK  # utime, stime


def _patch_cpu_timing() -> None:
    if _CHILD.get("patched"):
        return
    _CHILD["patched"] = True
    from datatrove.pipeline.extractors import base as xb
    from datatrove.utils import stats as dstats

    def enter(self):
        self._entry_time = time.process_time() + _CHILD["cpu"]

    def exit_(self, *exc):
        self.update(time.process_time() + _CHILD["cpu"] - self._entry_time)
    dstats.TimingStats.__enter__ = enter
    dstats.TimingStats.__exit__ = exit_

    orig = xb.ExtractorSandbox.process_document

    def process_document(self, text, extract_fn):
        self._ensure_process(extract_fn)
        pid = self.process.pid
        try:
            before = _proc_cpu(pid)
        except OSError:
            before = None
        try:
            return orig(self, text, extract_fn)
        finally:
            if before is not None:
                try:
                    _CHILD["cpu"] += max(0.0, _proc_cpu(pid) - before)
                except OSError:  # the child was killed after a timeout: its last document is not counted
                    pass
    xb.ExtractorSandbox.process_document = process_document


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LanguageFilter)
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.lid import FT176LID

    work = spec["work"]
    ids_dir = os.path.join(work, "ids")
    os.makedirs(ids_dir, exist_ok=True)
    lid_model = spec["lid_model"]

    class LocalFT176LID(FT176LID):
        """lid.176 from a local file: datatrove would download lid.176.bin at run time."""

        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText
                self._model = _FastText(lid_model)
            return self._model

    class LocalLanguageFilter(LanguageFilter):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.model = LocalFT176LID(self.languages)

    class _IdLog(PipelineStep):
        """Records the ids of the documents that reach this point (one file per rank)."""
        name = "id log"
        type = "BENCH"

        def __init__(self, label: str):
            super().__init__()
            self.label = label

        def run(self, data, rank: int = 0, world_size: int = 1):
            ids = []
            for doc in data:
                ids.append(doc.id)
                yield doc
            with open(os.path.join(ids_dir, f"{self.label}-{rank:05d}.txt"), "w") as fh:
                fh.write("\n".join(ids) + ("\n" if ids else ""))

    class _CpuTimers(PipelineStep):
        """First step of every pipeline: patches the timers in the worker process (forkserver
        workers do not see patches made here), then passes its input through."""
        name = "cpu timers"
        type = "BENCH"

        def __call__(self, data=None, rank: int = 0, world_size: int = 1):
            _patch_cpu_timing()
            return data

        def run(self, data, rank: int = 0, world_size: int = 1):  # pragma: no cover - never called
            return data

    n_files = len([f for f in os.listdir(spec["input"]) if f.endswith(".warc.gz")])
    workers = spec["workers"]
    langs = spec["languages"]
    pipeline = [
        _CpuTimers(),
        WarcReader(spec["input"], glob_pattern="*.warc.gz"),
        _IdLog("read"),
        Trafilatura(),
        _IdLog("extract"),
        LocalLanguageFilter(languages=langs, language_threshold=spec["threshold"]),
        _IdLog("langid"),
        GopherRepetitionFilter(),
        _IdLog("gopher_repetition"),
        GopherQualityFilter(),
        _IdLog("gopher_quality"),
        C4QualityFilter(),
        _IdLog("c4"),
        FineWebQualityFilter(char_duplicates_ratio=0.1),
        _IdLog("fineweb"),
        JsonlWriter(os.path.join(work, "output" if not spec["dedup"] else "filtered")),
    ]
    times = {}
    if spec["dedup"]:
        from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                              MinhashDedupSignature)
        from datatrove.pipeline.dedup.minhash import MinhashConfig
        cfg = MinhashConfig(n_grams=spec["ngram"], num_buckets=spec["bands"], hashes_per_bucket=spec["rows"])
        mh = os.path.join(work, "minhash")
        pipeline.append(MinhashDedupSignature(output_folder=f"{mh}/signatures", config=cfg))
    t = time.time()
    LocalPipelineExecutor(pipeline, tasks=n_files, workers=workers, logging_dir=os.path.join(work, "logs", "1"),
                          skip_completed=False).run()
    times["filter"] = time.time() - t
    if spec["dedup"]:
        t = time.time()
        LocalPipelineExecutor([_CpuTimers(), MinhashDedupBuckets(input_folder=f"{mh}/signatures", output_folder=f"{mh}/buckets",
                                                   config=cfg)],
                              tasks=cfg.num_buckets, workers=workers, logging_dir=os.path.join(work, "logs", "2"),
                              skip_completed=False).run()
        times["minhash_buckets"] = time.time() - t
        t = time.time()
        LocalPipelineExecutor([_CpuTimers(), MinhashDedupCluster(input_folder=f"{mh}/buckets", output_folder=f"{mh}/remove_ids",
                                                   config=cfg)],
                              tasks=1, workers=1, logging_dir=os.path.join(work, "logs", "3"),
                              skip_completed=False).run()
        times["minhash_cluster"] = time.time() - t
        t = time.time()
        LocalPipelineExecutor([_CpuTimers(), JsonlReader(os.path.join(work, "filtered")),
                               MinhashDedupFilter(input_folder=f"{mh}/remove_ids"),
                               _IdLog("dedup_minhash"),
                               JsonlWriter(os.path.join(work, "output"))],
                              tasks=n_files, workers=workers, logging_dir=os.path.join(work, "logs", "4"),
                              skip_completed=False).run()
        times["minhash_filter"] = time.time() - t
    with open(os.path.join(work, "result.json"), "w") as fh:
        json.dump({"wall": times}, fh)


if __name__ == "__main__":
    main()
