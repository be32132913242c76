"""The benchmark tools run end to end and write what they print (behaviour, never speed)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clip_depth_ros.cli", "bench", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_bench_model_rows_per_backend_mode_and_batch(tmp_path):
    out = tmp_path / "model.json"
    proc = _cli("model", "--models", "tiny-mirror", "--backends", "torch", "onnxruntime",
                "--modes", "eager", "fast", "--sizes", "160x120", "--batch-sizes", "1", "2",
                "--iters", "3", "--warmup", "1", "--threads", "1", "--cache-dir",
                str(tmp_path / "engines"), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # --device defaults to auto, as the node: this machine's GPU when torch sees one
    assert result["machine"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    rows = result["rows"]
    kinds = {(r["backend"], r["mode"], r["size"], r["batch"]) for r in rows}
    assert kinds == {("torch", "eager", "-", 1), ("torch", "eager", "-", 2),
                     ("torch", "eager", "160x120", 1), ("torch", "fast", "-", 1),
                     ("torch", "fast", "-", 2), ("torch", "fast", "160x120", 1),
                     ("onnxruntime", "-", "-", 1), ("onnxruntime", "-", "160x120", 1)}
    for row in rows:
        stats = row.get("model_ms") or row["frame_ms"]
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
        assert row["images_per_s"] > 0
    assert "p99" in proc.stdout and "onnxruntime" in proc.stdout


def test_bench_model_reports_what_it_could_not_build(tmp_path):
    proc = _cli("model", "--models", "no-such-model", "--backends", "torch", "--modes", "eager",
                "--iters", "1", "--warmup", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not measured: no-such-model torch eager fp32" in proc.stdout


def test_bench_stages_plain_and_fast_path_tables(tmp_path):
    for fast, stage in (("never", "resize back"), ("always", "device pass")):
        out = tmp_path / f"stages-{fast}.json"
        proc = _cli("stages", "--models", "tiny-mirror", "--sizes", "160x120", "--iters", "2",
                    "--warmup", "1", "--fast-path", fast, "--json", str(out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["machine"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
        stages = result["results"][0]["stages_ms"]
        assert stage in stages and "message fill" in stages and "total" in stages
        assert stage in proc.stdout
