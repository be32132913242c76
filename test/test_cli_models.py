"""`clip-depth models`: headers, aligned columns, the default marked, one labelled score per
bundled model (issue 13 item 10)."""
from __future__ import annotations

from clip_depth_ros.cli import headline_metrics, main
from clip_depth_ros.config import (DEFAULT_WEIGHTS, list_bundled_weights, list_models,
                                   resolve_weights)
from clip_depth_ros.weights import read_sidecar


def _tables(capsys) -> tuple[list[str], list[str]]:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    configs_at = lines.index("model configs:")
    weights_at = next(i for i, line in enumerate(lines) if line.startswith("bundled weights"))
    return lines[configs_at + 1:weights_at - 1], lines[weights_at + 1:]


def _column_starts(header: str) -> list[int]:
    return [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]


def test_configs_table_has_headers_and_aligned_columns(capsys):
    configs, _ = _tables(capsys)
    header, rows = configs[0], configs[1:]
    assert header.split()[:6] == ["MODEL", "METHOD", "BACKBONE", "INPUT", "DEPTH", "WEIGHTS"]
    assert [row.split()[0] for row in rows] == list_models()
    starts = _column_starts(header)
    for row in rows:  # every cell starts under its header (a long name once shifted a row)
        for start in starts[1:6]:
            assert row[start - 1] == " " and row[start] != " ", row


def test_weights_table_marks_the_default_and_labels_the_split(capsys):
    _, weights = _tables(capsys)
    header, rows = weights[0], weights[1:]
    assert header.split() == ["WEIGHTS", "MODEL", "d1", "AbsRel", "MEASURED", "ON"]
    assert [row[1:].split()[0] for row in rows] == list_bundled_weights()
    marked = [row for row in rows if row.startswith("*")]
    assert len(marked) == 1 and marked[0].split()[1] == DEFAULT_WEIGHTS
    d1_at = header.index("d1")
    for row in rows:
        name = row[1:].split()[0]
        held_out = read_sidecar(resolve_weights(name))["metadata"]["heldout_eval"]
        split, metrics = held_out["split"], held_out["metrics"]
        # the README's held-out figure with its split, not the training validation's
        assert row[d1_at:].split()[:2] == [f"{metrics['d1']:.3f}", f"{metrics['abs_rel']:.3f}"]
        data = {"synthetic-indoor": "synthetic rooms",
                "synthetic-worlds": "synthetic worlds"}[split["data"]]
        assert row.endswith(f"held-out {data} ({split['samples']}, seed {split['seed']})")


def test_training_validation_only_is_labelled_so():
    metadata = {"metrics": {"d1": 0.7521, "abs_rel": 0.1983, "n_images": 64}}
    assert headline_metrics(metadata) == ("0.752", "0.198", "training validation (64)")
    assert headline_metrics({}) is None
