"""The one-shot GPU check's CPU mode: the stages that need no benchmark run end to end in
seconds, and the JSON and markdown they write say what each found."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_checks

# The benchmark stages are bench_matte.py runs, which tests/test_bench.py already covers.
CPU_STAGES = ["attention_chunked", "vae_finite", "sam2_offload", "matte_gpu_frames", "repeat20",
              "comfy_lowvram", "cuda_tests"]


def test_quick_cpu_run_writes_one_record_per_stage(tmp_path, monkeypatch):
    monkeypatch.delenv("COMFYUI_DIR", raising=False)
    assert gpu_checks.main(["--device", "cpu", "--quick", "--inline", "--out", str(tmp_path),
                            "--stages", ",".join(CPU_STAGES)]) == 0
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    stages = {s["name"]: s for s in data["stages"]}
    assert list(stages) == CPU_STAGES
    for s in stages.values():
        assert set(s) == {"name", "status", "seconds", "figures", "error"}
        assert s["status"] in ("ok", "skipped"), s

    attention = stages["attention_chunked"]
    if attention["status"] == "ok":  # the chunked module is there: chunks must be exact
        assert attention["figures"]["sdpa_batch"] > attention["figures"]["max_batch"]
        assert attention["figures"]["max_abs_diff_vs_math"] < 1e-5
    else:
        assert attention["error"].startswith("not available")

    vae = stages["vae_finite"]["figures"]
    assert vae["fp32_decode_finite"] and vae["bf16_decode_finite"] and vae["fp32_encode_finite"]
    if stages["sam2_offload"]["status"] == "ok":
        assert stages["sam2_offload"]["figures"]["equal"] is True
    assert stages["matte_gpu_frames"]["figures"]["max_abs_diff_vs_cpu_frames"] == 0.0
    assert stages["repeat20"]["figures"]["growth_bytes"] == 0
    assert stages["repeat20"]["figures"]["bytes_after_run2"] > 0
    assert stages["comfy_lowvram"]["error"].startswith("ComfyUI not carried")
    assert stages["cuda_tests"]["error"] == "needs CUDA"

    table = (tmp_path / "gpu_check.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in table[4:]] == CPU_STAGES


def test_failing_stage_is_one_line_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(ctx):
        raise ValueError("kernel said no\nsecond line of detail")

    monkeypatch.setitem(gpu_checks.STAGES, "broken", (broken, 5))
    gpu_checks.main(["--device", "cpu", "--quick", "--inline", "--out", str(tmp_path),
                     "--stages", "broken,comfy_lowvram"])
    stages = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert [s["status"] for s in stages] == ["failed", "skipped"]
    assert stages[0]["error"] == "ValueError: kernel said no"
