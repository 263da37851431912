"""The one runner (videomama.pipeline.run.run_matte): plan -> place -> run -> step down on out-of-memory.

The model is the real tiny VideoMaMa model; its decoder raises a real out-of-memory error on
chosen calls, so the retry path runs the real scheduler, plans and weight placement.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from run_helpers import FailingModel, disc_clip

from videomama.memory import plans as lv_plans
from videomama.memory.retry import is_oom_error
from videomama.memory.streaming import BlockStreamer, streamer_of
from videomama.options import MatteOptions
from videomama.pipeline.matte import collect_frames, matte_clip
from videomama.pipeline.model import VideoMaMaModel
from videomama.pipeline.run import LocalHost, run_matte
from videomama.weights.configs import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_random_unet, build_random_vae

OPTIONS = MatteOptions(resolution=64, window=4, overlap=1, decode_chunk=4)  # 5 frames -> 2 windows
LOGGER = "videomama.pipeline.run"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def parts():
    return build_random_unet(TINY_UNET_CONFIG, seed=0), build_random_vae(TINY_VAE_CONFIG, seed=0)


@pytest.fixture(scope="module")
def reference(parts):
    frames, masks = disc_clip()
    return matte_clip(VideoMaMaModel(*parts), frames, masks, OPTIONS)


def _run(model, memory=lv_plans.DEFAULT, **kwargs):
    frames, masks = disc_clip()
    return collect_frames(run_matte(model, frames, masks, OPTIONS, memory=memory, host=LocalHost("cpu"), **kwargs), 5)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]


def test_oom_steps_down_once_and_says_what_changed(parts, reference, caplog):
    flaky = FailingModel(*parts, fail_on={1})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = _run(flaky)
    assert float((out - reference).abs().max()) < 1e-3  # low_vram: same result up to rounding
    (msg,) = _warnings(caplog)
    assert "'default'" in msg and "'low_vram'" in msg and "Tried to allocate 2.00 GiB" in msg
    assert "streamed" in msg and "the result is unchanged" in msg and "starting again" in msg
    assert streamer_of(flaky) is None  # the failed and the retried attempt both cleaned up


def test_never_steps_into_a_result_changing_plan_unless_allowed(parts, caplog):
    # low_vram is the last plan that keeps the result: a second failure propagates, with a note.
    twice = FailingModel(*parts, fail_on={1, 2})
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        _run(twice)
    assert twice.decode_calls == 2
    assert any("no lower plan keeps the result" in n and "'low_vram'" in n for n in info.value.__notes__)
    # Allowed: it steps on into low_vram_decode4 and says the result CHANGES.
    allowed = FailingModel(*parts, fail_on={1, 2})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = _run(allowed, allow_result_changes=True)
    assert out.shape == (5, 48, 64)
    msgs = _warnings(caplog)
    assert len(msgs) == 2 and "'low_vram_decode4'" in msgs[1] and "CHANGES" in msgs[1]


def test_other_errors_are_not_retried(parts):
    broken = FailingModel(*parts, fail_on={1}, error=ValueError, message="not a memory problem")
    with pytest.raises(ValueError, match="not a memory problem"):
        _run(broken)
    assert broken.decode_calls == 1
    assert is_oom_error(RuntimeError("CUDA error: out of memory")) and not is_oom_error(RuntimeError("shape"))


class PlacingHost(LocalHost):
    """A host that owns placement (as ComfyUI's does): records what it was asked."""

    places_weights = True

    def __init__(self):
        super().__init__("cpu")
        self.placed: list[tuple[str, int]] = []

    def place(self, model, plan, activation_bytes):
        self.placed.append((plan.name, activation_bytes))


def test_a_host_that_places_weights_never_streams(parts, monkeypatch, caplog):
    flaky = FailingModel(*parts, fail_on={1})
    seen = []
    original = BlockStreamer.__init__
    monkeypatch.setattr(BlockStreamer, "__init__", lambda self, *a, **k: (seen.append(1), original(self, *a, **k)))
    host = PlacingHost()
    frames, masks = disc_clip()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = collect_frames(run_matte(flaky, frames, masks, OPTIONS, memory="default", host=host), 5)
    assert out.shape == (5, 48, 64) and seen == []  # neither attempt streamed
    assert [name for name, _ in host.placed] == ["default", "low_vram"]
    assert host.placed[0][1] > host.placed[1][1] > 0  # the lower plan asks for less activation memory
    (msg,) = _warnings(caplog)
    assert "streamed" not in msg and "the result is unchanged" in msg
    assert lv_plans.DEFAULT.lower(streaming=False) == dataclasses.replace(lv_plans.LOW_VRAM, stream_unet=False)


def test_an_oom_mid_clip_resumes_without_repeating_frames(parts, reference, caplog):
    late = FailingModel(*parts, fail_on={2})  # the second window fails after frame 0 was handed out
    frames, masks = disc_clip()
    handed = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i, alpha in run_matte(late, frames, masks, OPTIONS, memory="default", host=LocalHost("cpu")):
            handed.append((i, alpha))
    assert [i for i, _ in handed] == [0, 1, 2, 3, 4]
    out = torch.stack([a for _, a in handed])
    assert float((out - reference).abs().max()) < 1e-3
    (msg,) = _warnings(caplog)
    assert "resuming at frame 1" in msg
    # windows [0..3] and [1..4] both cover frame 1, so the retry re-runs both: 1 + 1 failed + 2 calls.
    assert late.decode_calls == 4


def test_stopping_early_removes_the_streaming_hooks(parts):
    model = VideoMaMaModel(*parts)
    frames, masks = disc_clip()
    it = run_matte(model, frames, masks, OPTIONS, memory="low_vram", host=LocalHost("cpu"))
    next(it)
    assert streamer_of(model) is not None
    it.close()
    assert streamer_of(model) is None
