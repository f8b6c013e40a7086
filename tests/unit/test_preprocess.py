"""The model input contract: Preprocessor (live frames) and to_input (data-set batches)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from splitcore.runtime.preprocess import INPUT_SIZE, Preprocessor, to_input

RNG_SEED = 1234


def _image(h: int, w: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_output_shape_dtype_range_and_layout() -> None:
    pre = Preprocessor()
    out = pre(_image(240, 320))
    assert out.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) == pre.shape
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_extremes_map_to_zero_and_one() -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, 32:] = 255
    out = Preprocessor()(frame)
    assert out[..., : INPUT_SIZE // 2].max() == 0.0
    assert out[..., INPUT_SIZE // 2:].min() == 1.0


def test_bgr_frame_becomes_rgb_planes() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in OpenCV's BGR order
    out_bgr = Preprocessor("bgr")(frame)
    assert out_bgr[0, 2].min() == 1.0 and out_bgr[0, :2].max() == 0.0
    out_rgb = Preprocessor("rgb")(frame)  # the same bytes read as RGB are pure red
    assert out_rgb[0, 0].min() == 1.0 and out_rgb[0, 1:].max() == 0.0


@pytest.mark.parametrize("shape", [(240, 320), (480, 640), (33, 31), (16, 16)])
def test_resize_is_cv2_inter_area(shape: tuple[int, int]) -> None:
    frame = _image(*shape)
    expected_rgb = cv2.cvtColor(
        cv2.resize(frame, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA),
        cv2.COLOR_BGR2RGB)
    expected = expected_rgb.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(Preprocessor("bgr")(frame), expected)


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, (INPUT_SIZE, INPUT_SIZE, 3)))
def test_preprocessor_matches_to_input_bit_for_bit(rgb32: np.ndarray) -> None:
    batch = to_input(rgb32[None])
    np.testing.assert_array_equal(Preprocessor("rgb")(rgb32), batch)
    bgr32 = np.ascontiguousarray(rgb32[..., ::-1])
    np.testing.assert_array_equal(Preprocessor("bgr")(bgr32), batch)


def test_to_input_batches_and_single_images() -> None:
    batch = np.stack([_image(INPUT_SIZE, INPUT_SIZE, seed) for seed in range(4)])
    out = to_input(batch)
    assert out.shape == (4, 3, INPUT_SIZE, INPUT_SIZE) and out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out[2:3], to_input(batch[2]))
    np.testing.assert_array_equal(out[1, 0], batch[1, :, :, 0] / np.float32(255))


def test_scaling_is_division_like_training() -> None:
    """Training divides by 255 in float32; multiplying by 1/255 differs by an ulp."""
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    out = to_input(values)
    np.testing.assert_array_equal(out, values.transpose(0, 3, 1, 2) / np.float32(255))
    torch = pytest.importorskip("torch")
    trained = torch.from_numpy(values).permute(0, 3, 1, 2).float().div_(255.0).numpy()
    np.testing.assert_array_equal(out, trained)


def test_output_buffer_is_reused_unless_copied() -> None:
    pre = Preprocessor()
    first = pre(_image(240, 320, 1))
    kept = pre(_image(240, 320, 1), copy=True)
    assert kept is not first and not np.shares_memory(kept, first)
    second = pre(_image(240, 320, 2))
    assert second is first  # the documented reuse: the old result is overwritten
    assert not np.array_equal(kept, second)
    np.testing.assert_array_equal(kept, pre(_image(240, 320, 1), copy=True))


@pytest.mark.parametrize("bad", [
    np.zeros((32, 32), np.uint8),
    np.zeros((32, 32, 4), np.uint8),
    np.zeros((32, 32, 3), np.float32),
])
def test_bad_frames_are_refused_clearly(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        Preprocessor()(bad)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="color"):
        Preprocessor("yuv")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="numpy"):
        Preprocessor()([[0, 0, 0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        to_input(np.zeros((2, 32, 32, 1), np.uint8))
