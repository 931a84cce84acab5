"""decontaminate: planted evaluation passages in sample-crawl pages are found (edited copies too)
and cut out, pages that only share common phrases are left alone, drop/mark, the report, the
index (reused, rebuilt when a file changes) and every source format."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from datapipe.samplecrawl.pages import sample_article_page
from datapipe.schema import BASE_SCHEMA, table_from_rows
from datapipe.stage import StageError, WorkflowContext, build_stage
from tests.conftest import REPO

EXAMPLE = REPO / "configs" / "decontam" / "example_eval.jsonl"
ITEMS = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]


class SerialEngine:
    num_cpus = 1
    num_gpus = 0

    def map(self, fn, items, **_):
        return [fn(x) for x in items]


def _page(seed: int) -> str:
    return "\n".join(sample_article_page("en", seed).paragraphs)


def _run(tmp: Path, rows: list[dict], options: dict, tag: str = "run"):
    inp = tmp / f"{tag}-in"
    inp.mkdir(parents=True, exist_ok=True)
    tbl = table_from_rows(rows, BASE_SCHEMA)
    half = (len(rows) + 1) // 2
    paths = [inp / "s0.parquet", inp / "s1.parquet"]
    pq.write_table(tbl.slice(0, half), paths[0])
    pq.write_table(tbl.slice(half), paths[1])
    out = tmp / f"{tag}-out"
    out.mkdir(parents=True, exist_ok=True)
    rejects = []
    opts = {"benchmarks": [{"name": "example", "path": str(EXAMPLE), "fields": ["question", "answer"],
                            "id_field": "id"}], "index_dir": str(tmp / "index"), **options}
    wf = build_stage("decontaminate", opts)
    ctx = WorkflowContext(inputs=[str(p) for p in paths], output_dir=str(out), work_dir=str(tmp / f"{tag}-work"),
                          engine=SerialEngine(), reject_sink=lambda stage, shard, t: rejects.append(t))
    stats = wf.run(ctx)
    kept = {r["id"]: r for p in paths for r in pq.read_table(out / p.name).to_pylist()}
    report = (tmp / f"{tag}-work" / "contamination_report.tsv").read_text().splitlines()
    return kept, [r for t in rejects for r in t.to_pylist()], stats, report, tmp / f"{tag}-work"


def _edited(s: str) -> str:
    """A light edit: case, punctuation and whitespace changed, words the same."""
    return "  " + s.upper().replace(",", " ;").replace("?", "!!").replace(" ", "\n ", 3) + " "


@pytest.fixture()
def pages() -> list[str]:
    return [_page(seed) for seed in range(12)]


def test_planted_passages_found_and_removed(tmp_path, pages):
    q1, q3 = ITEMS[0]["question"], ITEMS[2]["question"]
    planted = pages[0].replace("\n", "\n" + q1 + "\n", 1)
    edited = pages[1] + "\n" + _edited(q3) + "\nThe end of the story."
    rows = [{"id": "plant", "url": "https://a.example/1", "text": planted},
            {"id": "edited", "url": "https://b.example/2", "text": edited}]
    rows += [{"id": f"clean{i}", "url": f"https://c.example/{i}", "text": t} for i, t in enumerate(pages[2:])]
    kept, rej, stats, report, work = _run(tmp_path, rows, {"action": "remove"})
    # the planted passage is gone and the rest is byte-identical
    assert kept["plant"]["text"] == pages[0].replace("\n", "\n\n", 1)
    assert kept["plant"]["decontam_benchmark"] == "example" and kept["plant"]["decontam_item"] == "ex-001"
    assert kept["plant"]["decontam_overlap"] == len(q1.replace("-", " ").split())  # hyphens split words
    # the edited copy is found; what is left of it is only punctuation and space
    assert kept["edited"]["decontam_item"] == "ex-003"
    left = kept["edited"]["text"][len(pages[1]):]
    assert not any(c.isalpha() for c in left.replace("The end of the story.", "")), repr(left)
    assert kept["edited"]["text"].startswith(pages[1]) and left.endswith("\nThe end of the story.")
    # nothing else touched
    for i, t in enumerate(pages[2:]):
        assert kept[f"clean{i}"]["text"] == t and kept[f"clean{i}"]["decontam_item"] is None
    assert rej == []
    counters = {k: v for s in stats.values() for k, v in s.counters.items()}
    assert counters["contaminated:example"] == 2 and counters["spans_removed"] == 2
    assert counters["index_ngrams"] > 0
    assert report[0] == "benchmark\titem_id\tdoc_id\turl\toverlap_words\toverlap_chars"
    rows_rep = sorted(tuple(r.split("\t")[:4]) for r in report[1:])
    assert rows_rep == [("example", "ex-001", "plant", "https://a.example/1"),
                        ("example", "ex-003", "edited", "https://b.example/2")]
    meta = json.loads((work / "contamination_index.json").read_text())
    assert meta["items"] == len(ITEMS) and meta["ngrams"] > 0 and meta["reused"] is False


def test_common_phrases_are_not_contamination(tmp_path, pages):
    # pages sharing phrases with the items (up to 12 words in a row), never 13
    words = ITEMS[3]["question"].split()
    shared = " ".join(words[:12])
    rows = [{"id": f"p{i}", "url": None, "text": t + "\n" + shared + " and then something else entirely."}
            for i, t in enumerate(pages)]
    rows.append({"id": "answer", "url": None, "text": "The answer was: " + ITEMS[1]["answer"] + " " + pages[0]})
    kept, rej, stats, report, _ = _run(tmp_path, rows, {"action": "drop"})
    assert len(kept) == len(rows) and rej == []
    assert all(r["decontam_benchmark"] is None for r in kept.values())
    assert report == ["benchmark\titem_id\tdoc_id\turl\toverlap_words\toverlap_chars"]
    # with n = 8 the same 12 shared words are an overlap
    kept8, rej8, _, _, _ = _run(tmp_path, rows, {"action": "drop", "ngram": 8}, tag="n8")
    assert len(kept8) == 1 and {r["reason"] for r in rej8} == {"decontaminate_v1:example"}


def test_drop_and_mark(tmp_path, pages):
    text = pages[0] + "\n" + ITEMS[4]["question"]
    rows = [{"id": "hit", "url": None, "text": text}, {"id": "miss", "url": None, "text": pages[1]}]
    kept, rej, stats, _, _ = _run(tmp_path, rows, {"action": "drop"})
    assert list(kept) == ["miss"] and [r["id"] for r in rej] == ["hit"]
    assert sum(s.dropped.get("decontaminate_v1:example", 0) for s in stats.values()) == 1
    kept, rej, _, _, _ = _run(tmp_path, rows, {"action": "mark"}, tag="mark")
    assert kept["hit"]["text"] == text and kept["hit"]["decontam_item"] == "ex-005" and rej == []


def test_a_page_that_is_all_benchmark_is_dropped_when_emptied(tmp_path):
    rows = [{"id": "all", "url": None, "text": ITEMS[0]["question"] + "\n" + ITEMS[0]["answer"]}]
    kept, rej, _, _, _ = _run(tmp_path, rows, {"action": "remove", "ngram": 8})
    assert kept == {} and rej[0]["reason"] == "decontaminate_v1:empty"


def test_index_reused_and_rebuilt(tmp_path, pages):
    ev = tmp_path / "ev.jsonl"
    ev.write_text(EXAMPLE.read_text())
    opts = {"benchmarks": [{"name": "ev", "path": str(ev), "fields": ["question"]}], "index_dir": str(tmp_path / "ix")}
    wf = build_stage("decontaminate", opts)
    p1, m1, built1 = wf.index()
    p2, m2, built2 = wf.index()
    assert built1 and not built2 and p1 == p2 and m1 == m2
    assert m1["bytes"] == 12 * m1["ngrams"]
    ev.write_text(EXAMPLE.read_text().splitlines()[0] + "\n")
    p3, m3, built3 = build_stage("decontaminate", opts).index()
    assert built3 and p3 != p1 and m3["items"] == 1


def test_source_formats(tmp_path, pages):
    import datasets
    tbl = pa.table({"qid": [it["id"] for it in ITEMS], "prompt": [it["question"] for it in ITEMS]})
    pq.write_table(tbl, tmp_path / "ev.parquet")
    pcsv.write_csv(tbl, tmp_path / "ev.csv")
    datasets.Dataset(tbl).save_to_disk(str(tmp_path / "ev_hf"))
    text = pages[0] + "\n" + ITEMS[1]["question"]
    for src in ("ev.parquet", "ev.csv", "ev_hf"):
        opts = {"benchmarks": [{"name": src, "path": str(tmp_path / src), "fields": ["prompt"], "id_field": "qid"}],
                "index_dir": str(tmp_path / "ix"), "action": "mark"}
        wf = build_stage("decontaminate", opts)
        inp = tmp_path / f"in-{src}"
        inp.mkdir()
        pq.write_table(table_from_rows([{"id": "d", "text": text}], BASE_SCHEMA), inp / "s.parquet")
        out = tmp_path / f"out-{src}"
        out.mkdir()
        wf.run(WorkflowContext(inputs=[str(inp / "s.parquet")], output_dir=str(out), work_dir=str(tmp_path / f"w-{src}"),
                               engine=SerialEngine()))
        row = pq.read_table(out / "s.parquet").to_pylist()[0]
        assert (row["decontam_benchmark"], row["decontam_item"]) == (src, "ex-002"), src


def test_bad_options(tmp_path):
    ok = {"name": "x", "path": str(EXAMPLE), "fields": ["question"]}
    for opts in ({"benchmarks": []}, {"benchmarks": [{"path": str(EXAMPLE)}]},
                 {"benchmarks": [dict(ok, path=str(tmp_path / "none.jsonl"))]},
                 {"benchmarks": [dict(ok, split="test")]},
                 {"benchmarks": [ok], "action": "delete"}, {"benchmarks": [ok], "ngram": 0}):
        with pytest.raises(StageError):
            build_stage("decontaminate", opts)
    wf = build_stage("decontaminate", {"benchmarks": [dict(ok, fields=["nope"])], "index_dir": str(tmp_path)})
    with pytest.raises(StageError, match="nope"):
        wf.index()
