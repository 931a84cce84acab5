"""`datapipe refilter`: stricter thresholds re-applied to scored output, no re-scoring."""
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from datapipe.cli import main
from datapipe.stage import apply_stage, build_stage


def make_run(tmp_path):
    texts = [("the cat and the dog " * n).strip() for n in (20, 40, 80)]
    batch = pa.table({"id": ["a", "b", "c"], "text": pa.array(texts, pa.large_string())})
    res = apply_stage(build_stage("gopher_quality", {}), batch)
    assert res.kept.num_rows == 3
    (tmp_path / "output").mkdir()
    pq.write_table(res.kept, tmp_path / "output" / "s-00000.parquet")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"stages": [{"gopher_quality": {}}]}))
    return tmp_path


def test_refilter_tightens_exactly(tmp_path, capsys):
    run = make_run(tmp_path)
    # 100, 200 and 400 words: min_words=150 must drop exactly the first
    assert main(["refilter", str(run), "--stage", "gopher_quality", "--set", "min_words=150",
                 "--write", str(tmp_path / "kept")]) == 0
    out = capsys.readouterr().out
    assert "kept now: 2" in out and "gopher_quality_v1:word_count" in out
    kept = pq.read_table(tmp_path / "kept" / "s-00000.parquet")
    assert kept["id"].to_pylist() == ["b", "c"]


def test_refilter_rejects_unknown_option_and_stage(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["refilter", str(run), "--stage", "gopher_quality", "--set", "min_wordz=1"]) == 2
    assert "min_wordz: unknown option" in capsys.readouterr().err
    assert main(["refilter", str(run), "--stage", "c4", "--set", "x=1"]) == 2
