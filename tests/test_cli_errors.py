"""User errors of every command: one line ``<prog>: error: ...`` on stderr, exit 2, no traceback
(one implementation: ``datapipe.commands.error``)."""
import pytest

from datapipe.cli import main


@pytest.mark.parametrize("argv, prefix, words", [
    (["stats", "{d}"], "datapipe", "no stats.json"),
    (["inspect", "{d}", "--stage", "x"], "datapipe", "no rejects/ folder"),
    (["report", "{d}"], "datapipe", "no stats.json"),
    (["show", "{d}/nope"], "datapipe", "not a directory"),
    (["refilter", "{d}", "--stage", "length"], "datapipe", "no config.yaml"),
    (["mix", "{d}", "--spec", "{d}/nope.yaml"], "datapipe", "mixture spec not found"),
    (["export-megatron", "{d}"], "datapipe", "no token-stream shards"),
    (["classify", "train", "{d}/nope.parquet", "--task", "quality", "--out", "{d}/m"], "datapipe classify",
     "nope.parquet"),
])
def test_command_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, prefix, words):
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prefix}: error: ") and err.count("\n") == 1 and words in err, err
