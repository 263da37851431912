"""SAM2 tracking (videomama.sam2.loading) with a tiny random-weight SAM2.1 loaded through the real loader.

Random weights give random masks, so these tests check the mechanics: shapes, resolution,
propagation in both directions (a prompt change on frame k must change frames before AND after
k, which only memory can do), objects and their union, binary vs soft, prompt parsing and the
errors users see. Identification of the real sizes uses meta-device models (no allocation).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videomama.errors import Cancelled, CheckpointError, InputError
from videomama.sam2 import available, configs, loading, tracking
from videomama.sam2 import prompts as sam2_prompts

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_sam2

T, H, W = 6, 48, 64  # non-square and smaller than the 128 px model input, on purpose


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def sam2_files(tmp_path_factory):
    pytest.importorskip("sam2")  # prompt parsing and the no-sam2 test run without it
    root = tmp_path_factory.mktemp("sam2")
    state = tiny_sam2.tiny_state_dict(seed=0)
    official = root / "sam2.1_tiny_random.pt"
    torch.save({"model": state}, official)  # the official layout: no config inside
    converted = loading.save_sam2_checkpoint(state, root / "sam2.1_tiny_random.safetensors", config=tiny_sam2.tiny_config())
    return {"pt": official, "safetensors": converted, "root": root, "state": state}


@pytest.fixture(scope="module")
def predictor(sam2_files):
    return loading.load_sam2(sam2_files["pt"], "cpu", config=tiny_sam2.tiny_config())


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, H, W, 3, generator=g)
    # a slowly changing clip: the same picture with a little per-frame noise
    return (base + 0.05 * torch.rand(T, H, W, 3, generator=g)).clamp(0, 1)


def rect_mask(x0, y0, x1, y1):
    m = torch.zeros(H, W)
    m[y0:y1, x0:x1] = 1
    return m


def steps_by_frame(predictor, frames, prompts, **kw):
    return {s.frame: s for s in tracking.iter_track(predictor, frames, prompts, **kw)}


# ------------------------------------------------------------------------------------------
# loading and identification
# ------------------------------------------------------------------------------------------


def test_pt_and_safetensors_load_the_same_weights(predictor, sam2_files):
    other = loading.load_sam2(sam2_files["safetensors"], "cpu")  # config embedded in the file
    a, b = predictor.predictor.state_dict(), other.predictor.state_dict()
    assert a.keys() == b.keys() == sam2_files["state"].keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], sam2_files["state"][k]) for k in a)
    assert predictor.info.version == "2.1" and predictor.info.size == "custom"
    assert predictor.info.stages == (1, 1, 2, 1) and predictor.info.embed_dim == 8
    assert other.info.config_source == "embedded"
    assert predictor.predictor.image_size == tiny_sam2.IMAGE_SIZE
    assert predictor.dtype is None  # decided per call from the device the model is on
    module = predictor.predictor
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    # hole filling is configured (the official post-processing) but only runs on CUDA with sam2._C
    assert module.configured_fill_hole_area == 8 and module.fill_hole_area == 0


def test_custom_architecture_without_config_is_refused(sam2_files):
    with pytest.raises(CheckpointError, match=r"sam2\.1_tiny_random\.pt.*matches none of the official sizes"):
        loading.load_sam2(sam2_files["pt"], "cpu")


def test_wrong_config_is_refused_with_the_mismatch(sam2_files):
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(tiny_sam2.tiny_config(), {"memory_encoder": {"out_dim": 8}, "memory_attention": {"layer": {"cross_attention": {"kv_in_dim": 8}}}})
    with pytest.raises(CheckpointError, match=r"does not match.*another shape"):
        loading.load_sam2(sam2_files["pt"], "cpu", config=cfg)


def _meta_device():
    """``torch.device("meta")`` as a context, except for ``torch.linspace``: Hiera reads its
    stochastic-depth rates with ``.item()``, which a meta tensor cannot do."""
    from torch.utils._device import DeviceContext

    class MetaModels(DeviceContext):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.linspace:
                return func(*args, **(kwargs or {}))
            return super().__torch_function__(func, types, args, kwargs)

    return MetaModels(torch.device("meta"))


@pytest.mark.parametrize("version", ["2", "2.1"])
def test_official_sizes_identified_from_tensor_shapes(version):
    pytest.importorskip("sam2")
    params = {}
    for size in ("tiny", "small", "base_plus", "large"):
        with _meta_device():  # the real configs, built without allocating 39M-224M parameters
            model = configs.build_sam2_predictor(configs.sam2_model_config(version, size))
        assert next(model.parameters()).is_meta
        params[size] = sum(p.numel() for p in model.parameters())
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        info = loading.identify_sam2_shapes(shapes, f"hiera_{size}.pt")
        assert (info.version, info.size) == (version, size)
        # DDP/Lightning-style prefixes are seen through
        prefixed = loading.identify_sam2_shapes({"module." + k: s for k, s in shapes.items()})
        assert (prefixed.version, prefixed.size) == (version, size)
    # the published sizes: 38.9M, 46.0M, 80.8M, 224.4M parameters
    published = {"tiny": 38.9, "small": 46.0, "base_plus": 80.8, "large": 224.4}
    assert all(abs(params[s] / 1e6 - m) < 0.2 for s, m in published.items()), params


def test_not_sam2_files_are_refused_with_the_reason(sam2_files, tmp_path):
    from safetensors.torch import save_file

    unet = tmp_path / "unet.safetensors"
    save_file({"down_blocks.0.conv.weight": torch.zeros(2), "conv_in.weight": torch.zeros(2)}, str(unet))
    with pytest.raises(CheckpointError, match=r"unet\.safetensors.*diffusion model.*SAM2"):
        loading.identify_sam2(unet)

    sam1 = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(4, 3, 16, 16)}, sam1)
    with pytest.raises(CheckpointError, match=r"Segment Anything \(SAM v1\)"):
        loading.identify_sam2(sam1)

    half = dict(sam2_files["state"])
    half.pop("obj_ptr_tpos_proj.weight")
    half.pop("obj_ptr_tpos_proj.bias")
    mixed = tmp_path / "mixed.pt"
    torch.save({"model": half}, mixed)
    with pytest.raises(CheckpointError, match="unknown variant"):
        loading.identify_sam2(mixed)

    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(sam2_files["pt"].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"cut\.pt.*could not be loaded"):
        loading.identify_sam2(truncated)

    with pytest.raises(CheckpointError, match="not found"):
        loading.load_sam2(tmp_path / "missing.pt")


class _Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickle_with_code_is_never_run(tmp_path, capfd):
    evil = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _Exploit()}, evil)
    with pytest.raises(CheckpointError, match=r"sam2\.1_hiera_tiny\.pt.*pickled Python objects.*never run"):
        loading.identify_sam2(evil)  # the same reader as load_sam2, which needs sam2 installed
    assert "pickled code ran" not in capfd.readouterr().out


def test_embedded_config_may_only_name_sam2_classes(tmp_path, sam2_files):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(tiny_sam2.tiny_config())
    cfg["image_encoder"]["trunk"]["_target_"] = "os.system"
    with pytest.raises(CheckpointError, match="not a sam2 class"):
        loading.save_sam2_checkpoint(sam2_files["state"], tmp_path / "bad.safetensors", config=cfg)


# ------------------------------------------------------------------------------------------
# tracking
# ------------------------------------------------------------------------------------------


def test_shapes_resolution_binary_and_soft(predictor, frames):
    prompts = sam2_prompts.parse_prompts('[{"frame": 3, "points": [[30, 20], [50, 40]], "labels": [1, 0]}]', T, H, W)
    binary = tracking.track(predictor, frames, prompts, output="binary")
    soft = tracking.track(predictor, frames, prompts, output="soft")
    steps = steps_by_frame(predictor, frames, prompts)
    assert binary.shape == soft.shape == (T, H, W)
    assert binary.dtype == soft.dtype == torch.float32 and binary.device.type == "cpu"
    assert set(torch.unique(binary).tolist()) <= {0.0, 1.0}
    assert 0.0 < binary.mean() < 1.0  # neither all background nor all subject
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    assert 0.0 < soft.min() < soft.max() < 1.0  # really soft, not a thresholded mask
    logits = torch.stack([steps[f].logits[0] for f in range(T)])
    assert torch.equal(binary, (logits > 0).float())
    assert torch.allclose(soft, torch.sigmoid(logits))
    decided = (soft - 0.5).abs() > 1e-6
    assert torch.equal(binary[decided], (soft > 0.5).float()[decided])


def test_propagation_reaches_frames_before_and_after_the_prompt(predictor, frames):
    k = 3
    a = steps_by_frame(predictor, frames, [sam2_prompts.Prompt(frame=k, points=((20.0, 15.0),), labels=(1,))])
    b = steps_by_frame(predictor, frames, [sam2_prompts.Prompt(frame=k, points=((50.0, 35.0),), labels=(1,))])
    # every frame yielded exactly once: forward k+1..T-1, then backward k..0
    assert sorted(a) == list(range(T))
    assert [f for f, s in a.items() if not s.reverse] == list(range(k + 1, T))
    assert [f for f, s in a.items() if s.reverse] == list(range(k, -1, -1))
    for f in range(T):
        la, lb = a[f].logits, b[f].logits
        assert la.shape == (1, H, W) and torch.isfinite(la).all()
        assert (la > -1000).all()  # real decoder output, not SAM2's "no object" placeholder (-1024)
        # The frames are identical in both runs; only the click on frame k differs. A frame
        # differs only if memory from frame k reached it: forward for f > k, backward for f < k.
        assert not torch.allclose(la, lb), f"frame {f} did not see the prompt on frame {k}"


def test_keyframe_mask_comes_back_in_source_coordinates(predictor, frames):
    mask = rect_mask(8, 10, 30, 40)
    prompts = sam2_prompts.parse_prompts("", T, H, W, mask=mask, mask_frame=2)
    out = tracking.track(predictor, frames, prompts, output="binary")
    inter = (out[2] * mask).sum()
    union = ((out[2] + mask) > 0).sum()
    assert inter / union > 0.85  # the prompted frame reproduces the mask (up to 1/4-res resampling)
    assert (out[2, 10:40, 8:30] == 1).float().mean() > 0.9 and out[2, :, 40:].sum() == 0


def test_two_objects_distinct_and_union_is_their_max(predictor, frames):
    box1 = rect_mask(4, 4, 24, 44)
    prompts = sam2_prompts.parse_prompts(
        "", T, H, W, mask=box1, mask_frame=1, mask_object=1,
        positive='[{"x": 48, "y": 20}]', negative='[{"x": 10, "y": 10}]', points_frame=1, points_object=2,
    )
    assert [(p.frame, p.object) for p in prompts] == [(1, 1), (1, 2)]
    steps = steps_by_frame(predictor, frames, prompts)
    assert all(s.object_ids == (1, 2) for s in steps.values())
    logits = torch.stack([steps[f].logits for f in range(T)], dim=1)  # (2, T, H, W)
    per_object = {1: logits[0], 2: logits[1]}
    for f in range(T):  # distinct masks on every frame
        assert not torch.equal(per_object[1][f] > 0, per_object[2][f] > 0)
    # object 1's keyframe is its mask prompt
    assert ((per_object[1][1] > 0).float() != box1).float().mean() < 0.05

    one = tracking.track(predictor, frames, prompts, output="binary", objects=1)
    two = tracking.track(predictor, frames, prompts, output="soft", objects="2")
    union = tracking.track(predictor, frames, prompts, output="binary", objects="union")
    assert torch.equal(one, (per_object[1] > 0).float())
    assert torch.allclose(two, torch.sigmoid(per_object[2]))
    assert torch.equal(union, torch.maximum(one, (per_object[2] > 0).float()))
    assert union.sum() > one.sum() and union.sum() > (two > 0.5).sum()  # the union adds something to each


def test_objects_prompted_on_different_frames_track_on_cpu(predictor, frames):
    """Object 2 is tracked towards its prompt (frames 1-3 only have a future memory): with
    SAM2's bf16 memories this is the case that fails on a CPU; we keep memories in fp32."""
    prompts = [
        sam2_prompts.Prompt(frame=1, object=1, points=((20.0, 20.0),), labels=(1,)),
        sam2_prompts.Prompt(frame=4, object=2, box=(30.0, 10.0, 60.0, 40.0)),
    ]
    steps = steps_by_frame(predictor, frames, prompts)
    assert sorted(steps) == list(range(T))
    assert all(s.logits.shape == (2, H, W) and torch.isfinite(s.logits).all() for s in steps.values())
    # the earliest prompted frame comes from the backward pass, which saw object 2's later frames
    assert steps[1].reverse and steps[0].reverse and not steps[2].reverse


def test_memories_are_stored_in_the_state_dtype(predictor, frames):
    """The fp32 memories behind the test above: our predictor stores memory features in the dtype
    its inference state names (fp32 on the CPU), where SAM2 alone stores bfloat16."""
    ext = available.require_sam2()
    module = predictor.predictor
    images = tracking.ModelFrames(frames, T, H, W, module.image_size, torch.device("cpu"))
    cpu = torch.device("cpu")
    stored = {}
    for memory_dtype in (torch.float32, None):
        state = ext.new_inference_state(images, H, W, cpu, cpu, memory_dtype=memory_dtype)
        module.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[20, 20]], labels=[1])
        list(module.propagate_in_video(state))
        outputs = state["output_dict_per_obj"][0]
        stored[memory_dtype] = {out["maskmem_features"].dtype for kind in ("cond_frame_outputs", "non_cond_frame_outputs")
                                for out in outputs[kind].values()}
    assert stored[torch.float32] == {torch.float32}
    assert stored[None] == {torch.bfloat16}  # SAM2's own choice: the key is what changes it


def test_memory_pruning_changes_nothing(predictor):
    window = tracking._memory_window(predictor.predictor)
    n = 2 * window + 6
    g = torch.Generator().manual_seed(3)
    clip = torch.rand(n, 32, 40, 3, generator=g)
    prompts = [sam2_prompts.Prompt(frame=window + 2, points=((20.0, 16.0),), labels=(1,))]
    pruned = steps_by_frame(predictor, clip, prompts, prune_memory=True)
    full = steps_by_frame(predictor, clip, prompts, prune_memory=False)
    assert sorted(pruned) == sorted(full) == list(range(n))
    for f in range(n):
        assert torch.equal(pruned[f].logits, full[f].logits), f


def test_frames_as_numpy_or_list_and_offload_give_the_same_masks(predictor, frames):
    prompts = [sam2_prompts.Prompt(frame=2, points=((30.0, 20.0),), labels=(1,))]
    ref = tracking.track(predictor, frames, prompts, output="soft")
    assert torch.equal(tracking.track(predictor, frames.numpy(), prompts, output="soft"), ref)
    assert torch.equal(tracking.track(predictor, [f for f in frames], prompts, output="soft"), ref)
    assert torch.equal(tracking.track(predictor, frames, prompts, output="soft", offload_to_cpu=True), ref)
    # prompts may also be given as the JSON text
    assert torch.equal(tracking.track(predictor, frames, '{"frame": 2, "points": [[30, 20]]}', output="soft"), ref)


def test_progress_per_frame_and_cancel_between_frames(predictor, frames):
    prompts = [sam2_prompts.Prompt(frame=2, points=((30.0, 20.0),), labels=(1,))]
    calls = []
    tracking.track(predictor, frames, prompts, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, T) for i in range(1, T + 1)]
    seen = []
    with pytest.raises(Cancelled, match="cancelled"):
        tracking.track(predictor, frames, prompts, progress=lambda d, t: seen.append(d), should_cancel=lambda: len(seen) >= 2)
    assert seen == [1, 2]


def test_unknown_output_object_and_bad_arguments(predictor, frames):
    prompts = [sam2_prompts.Prompt(frame=0, object=1, points=((1.0, 1.0),), labels=(1,))]
    with pytest.raises(InputError, match=r"object 3 was selected.*only define object\(s\) 1"):
        tracking.track(predictor, frames, prompts, objects=3)
    with pytest.raises(InputError, match="'union' or an object id"):
        tracking.track(predictor, frames, prompts, objects="all")
    with pytest.raises(InputError, match="'binary' or 'soft'"):
        tracking.track(predictor, frames, prompts, output="alpha")
    with pytest.raises(InputError, match=r"frame 6 is out of range.*6 frames"):
        tracking.track(predictor, frames, [sam2_prompts.Prompt(frame=6, points=((1.0, 1.0),), labels=(1,))])
    with pytest.raises(InputError, match=r"shape \(48, 64\)"):
        tracking.track(predictor, frames[..., 0], prompts)
    with pytest.raises(InputError, match="load_sam2"):
        tracking.track(torch.nn.Linear(1, 1), frames, prompts)


# ------------------------------------------------------------------------------------------
# prompt parsing
# ------------------------------------------------------------------------------------------


def test_parse_full_form_merges_per_frame_and_object():
    text = """[
      {"frame": 0, "object": 1, "points": [[10, 20], [30, 5]], "labels": [1, 0]},
      {"frame": 0, "object": 1, "positive": [{"x": 40, "y": 41}], "negative": [[1, 2]]},
      {"frame": 4, "object": 2, "box": [5, 6, 50, 40]},
      {"object": 3, "points": [[0, 0], [64, 48]]}
    ]"""
    prompts = sam2_prompts.parse_prompts(text, T, H, W)
    assert [(p.frame, p.object) for p in prompts] == [(0, 1), (0, 3), (4, 2)]
    p1 = prompts[0]
    assert p1.points == ((10, 20), (30, 5), (40, 41), (1, 2)) and p1.labels == (1, 0, 1, 0)
    assert prompts[1].labels == (1, 1)  # labels default to 1, frame to 0; frame edges are inside
    assert prompts[2].box == (5, 6, 50, 40) and prompts[2].points == ()
    assert sam2_prompts.prompt_objects(prompts) == [1, 2, 3]


def test_parse_point_editor_formats():
    # KJNodes' Points Editor: '[{"x": .., "y": ..}]' strings for positive and negative points
    prompts = sam2_prompts.parse_prompts(None, T, H, W, positive='[{"x": 10, "y": 12}, {"x": 20.5, "y": 30}]',
                               negative='[{"x": 60, "y": 2}]', points_frame=3, points_object=2, box=(1, 2, 30, 40))
    assert len(prompts) == 1
    p = prompts[0]
    assert (p.frame, p.object) == (3, 2) and p.box == (1, 2, 30, 40)
    assert p.points == ((10, 12), (20.5, 30), (60, 2)) and p.labels == (1, 1, 0)
    # the same list wired straight into the prompts text, even in Python-repr quotes
    bare = sam2_prompts.parse_prompts("[{'x': 10, 'y': 12}]", T, H, W)
    assert bare[0].points == ((10, 12),) and (bare[0].frame, bare[0].object) == (0, 1)
    # normalized coordinates (the editor's `normalize` option)
    norm = sam2_prompts.parse_prompts('[{"x": 0.5, "y": 0.25}]', T, H, W, normalized=True)
    assert norm[0].points == ((32.0, 12.0),)
    # empty editor outputs are fine when something else prompts
    assert sam2_prompts.parse_prompts("[]", T, H, W, positive="[]", negative="", mask=torch.ones(H, W))[0].mask is not None


@pytest.mark.parametrize(
    "text, kwargs, pattern",
    [
        ('[{"frame": 0, "points": [[70, 10]]}]', {}, r"prompts\[0\]\.points\[0\]: point \(70, 10\) is outside the 64x48 frame"),
        ('[{"frame": 0, "points": [[10, -1]]}]', {}, r"outside the 64x48 frame"),
        ('[{"frame": 0, "box": [0, 0, 65, 10]}]', {}, r"prompts\[0\]\.box: point \(65, 10\) is outside"),
        ('[{"frame": 0, "points": [[10, 10]]', {}, r"prompts is not valid JSON: .* line 1 column \d+"),
        ("[{frame: 0}]", {}, r"not valid JSON"),
        ('{"frame": 9, "points": [[1, 1]]}', {}, r"prompts\[0\]: frame 9 is out of range; the clip has 6 frames \(0 to 5\)"),
        ('[{"frame": -1, "points": [[1, 1]]}]', {}, r"frame -1 is out of range"),
        ('[{"frame": 0, "point": [[1, 1]]}]', {}, r"unknown key\(s\) \['point'\]"),
        ('[{"frame": 0, "points": [[1, 1]], "labels": [1, 0]}]', {}, r"labels must be a list with one label per point"),
        ('[{"frame": 0, "points": [[1, 1]], "labels": [2]}]', {}, r"1 \(subject\) or 0 \(background\)"),
        ('[{"frame": 0, "points": [[1, "a"]]}]', {}, r"points\[0\]\.y must be a finite number"),
        ('[{"frame": 1.5, "points": [[1, 1]]}]', {}, r"frame must be an integer"),
        ('[{"frame": 0, "object": 1}]', {}, r"has no 'points', 'positive', 'negative' or 'box'"),
        ('[{"frame": 0, "box": [10, 10, 5, 20]}]', {}, r"box .* is empty"),
        ('[{"box": [0, 0, 5, 5]}, {"box": [1, 1, 6, 6]}]', {}, r"already has a box on frame 0"),
        ("", {}, r"no prompts"),
        ("[]", {"positive": "[]"}, r"no prompts"),
        ("", {"positive": '[{"x": 1}]'}, r"positive\[0\] must be \[x, y\]"),
        ("", {"negative": "{oops"}, r"negative is not valid JSON"),
        ('[{"points": [[1, 1]]}]', {"mask": torch.ones(H, W)}, r"both a mask and points/box"),
        ("", {"mask": torch.ones(2, H, W)}, r"one \(H, W\) mask"),
        ("", {"mask": torch.ones(H, W), "mask_frame": 6}, r"mask: frame 6 is out of range"),
        ("", {"box": (1, 2, 3)}, r"box must be \[x0, y0, x1, y1\]"),
        ('"just a string"', {}, r"must be a JSON list"),
    ],
)
def test_bad_prompts_are_rejected_with_where_and_why(text, kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        sam2_prompts.parse_prompts(text, T, H, W, **kwargs)


def test_validate_hand_built_prompts():
    with pytest.raises(InputError, match=r"object 1 on frame 0, point 0: point \(99, 1\) is outside"):
        sam2_prompts.validate_prompts([sam2_prompts.Prompt(frame=0, points=((99.0, 1.0),), labels=(1,))], T, H, W)
    with pytest.raises(InputError, match="given twice"):
        p = sam2_prompts.Prompt(frame=0, points=((1.0, 1.0),), labels=(1,))
        sam2_prompts.validate_prompts([p, p], T, H, W)
    with pytest.raises(InputError, match="has no points, box or mask"):
        sam2_prompts.validate_prompts([sam2_prompts.Prompt(frame=0)], T, H, W)
    with pytest.raises(InputError, match="no prompts"):
        sam2_prompts.validate_prompts([], T, H, W)


def test_masks_are_binarised_at_half():
    soft = np.full((H, W), 0.4, dtype=np.float32)
    soft[:10, :10] = 0.6
    p = sam2_prompts.parse_prompts("", T, H, W, mask=soft[None])[0]
    assert p.mask.dtype == torch.bool and int(p.mask.sum()) == 100


# ------------------------------------------------------------------------------------------
# without sam2
# ------------------------------------------------------------------------------------------


def test_library_imports_without_sam2_and_explains_the_install(tmp_path):
    code = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "sam2" or name.startswith("sam2."):
            raise ModuleNotFoundError("No module named 'sam2' (blocked for the test)")
        return None
sys.meta_path.insert(0, Block())
from videomama.sam2 import available, loading
from videomama.sam2 import prompts as sam2_prompts
assert not available.sam2_available()
p = sam2_prompts.parse_prompts('[{"points": [[1, 1]]}]', 2, 8, 8)   # prompt parsing needs no sam2
try:
    loading.load_sam2("x.pt")
except available.MissingDependencyError as exc:
    print("MESSAGE:", exc)
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install sam2" in out.stdout and "sam2._C" in out.stdout
