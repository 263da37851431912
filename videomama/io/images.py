"""Decoding and encoding single image files at full depth: 8/16-bit PNG and TIFF, EXR, DPX.

Pillow reads 8-bit images and 16-bit greyscale PNGs; it reads 16-bit RGB PNG/TIFF as 8-bit and
no EXR or DPX at all. Those go through OpenImageIO (the VFX industry's image library; the
``vfx`` extra: ``pip install OpenImageIO``), which reads every one of them as float. Without it,
an EXR/DPX plate is one clear error and a 16-bit RGB image is read at 8 bits with a warning.

Colour: the model expects display-referred frames (sRGB-encoded, as video and PNGs are). Float
files (EXR, HDR, float TIFF) usually hold scene-linear light, so by default (transfer ``auto``)
they are encoded with the sRGB curve, ``linear`` forces that, and ``srgb`` takes the values
as they are. Highlights above 1 are clipped (the model sees [0, 1]). Masks are data, never
converted.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["OIIO_SUFFIXES", "TRANSFERS", "Transfer", "decode_srgb", "encode_srgb", "file_is_float", "image_size", "matte_from_channels",
           "read_image", "read_rgb", "require_oiio", "write_image"]

Transfer = Literal["auto", "srgb", "linear"]
TRANSFERS: tuple[str, ...] = ("auto", "srgb", "linear")
# Files only OpenImageIO reads (Pillow does not know them).
OIIO_SUFFIXES = {".exr", ".dpx", ".cin", ".hdr"}
_warned_depth: set[str] = set()


def require_oiio(what: str) -> Any:
    """The OpenImageIO module, or one line saying how to install it for ``what``."""
    try:
        import OpenImageIO
    except ImportError as exc:
        raise InputError(f"{what} needs OpenImageIO, which is not installed; run `pip install OpenImageIO` "
                         "(or install comfyui-videomama[vfx]).") from exc
    return OpenImageIO


def _oiio_or_none() -> Any:
    try:
        import OpenImageIO
    except ImportError:
        return None
    return OpenImageIO


def encode_srgb(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> sRGB-encoded (display-referred) values, clipped to [0, 1]."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def decode_srgb(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear values (the inverse of :func:`encode_srgb`)."""
    x = np.clip(encoded, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def _pil_is_deep_colour(im: Any) -> bool:
    """A multi-channel image with 16 bits per channel, which Pillow would squeeze to 8 bits."""
    if im.mode not in ("RGB", "RGBA"):
        return False
    return any(";16" in str(tile.args) for tile in getattr(im, "tile", []))


def _read_pil(path: Path, dtype: Any = np.float32) -> tuple[np.ndarray, bool]:
    """(H, W, C) floats in [0, 1] via Pillow (C = 1, 3 or 4) and whether the file holds floats."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im, dtype=dtype)[..., None] / 65535.0, False
            if im.mode == "F":
                return np.asarray(im, dtype=dtype)[..., None], True
            if im.mode in ("1", "L", "P", "LA", "PA", "RGBA", "RGB"):
                mode = {"1": "L", "P": "RGBA" if "transparency" in im.info else "RGB", "PA": "RGBA", "LA": "RGBA"}
                target = mode.get(im.mode, im.mode)
                return np.asarray(im.convert(target), dtype=dtype).reshape(im.height, im.width, -1) / 255.0, False
            return np.asarray(im.convert("RGB"), dtype=dtype) / 255.0, False
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image '{path}': {exc}. Replace or remove the file.") from exc


def _read_oiio(oiio: Any, path: Path) -> tuple[np.ndarray, bool]:
    """(H, W, C) float32 via OpenImageIO (integers scaled to [0, 1]) and whether the file holds floats."""
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)  # the values as stored: no premultiplying of PNG/TIFF colour
    inp = oiio.ImageInput.open(str(path), config)
    if inp is None:
        raise InputError(f"cannot read image '{path}': {oiio.geterror()}. Replace or remove the file.")
    try:
        spec = inp.spec()
        pixels = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
        if pixels is None:
            raise InputError(f"cannot read image '{path}': {inp.geterror()}. Replace or remove the file.")
        is_float = str(spec.format) in ("half", "float", "double")
    finally:
        inp.close()
    arr = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, spec.nchannels)
    return arr, is_float


def read_image(path: str | Path, dtype: Any = np.float32) -> tuple[np.ndarray, bool]:
    """An image file at full depth: (H, W, C) floats (integers scaled to [0, 1], floats as stored)
    and whether the file holds floating-point values (EXR, HDR, float TIFF). ``dtype``: of what
    Pillow reads (float64 for exact metrics); OpenImageIO reads float32."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in OIIO_SUFFIXES:
        return _read_oiio(require_oiio(f"reading {suffix} files ('{p.name}')"), p)
    if suffix in (".png", ".tif", ".tiff"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                deep = _pil_is_deep_colour(im)
        except (UnidentifiedImageError, OSError) as exc:
            if suffix == ".png":
                raise InputError(f"cannot read image '{p}': {exc}. Replace or remove the file.") from exc
            deep = True  # a TIFF Pillow does not know (float, tiled...): OpenImageIO may
        if deep:
            oiio = _oiio_or_none()
            if oiio is not None:
                return _read_oiio(oiio, p)
            if str(p.parent) not in _warned_depth:
                _warned_depth.add(str(p.parent))
                log.warning("'%s' has 16 bits per channel but is read at 8 bits: install OpenImageIO "
                            "(`pip install OpenImageIO`) to read it at full depth.", p)
    return _read_pil(p, dtype)


def read_rgb(path: str | Path, transfer: Transfer = "auto") -> np.ndarray:
    """A frame as the model takes it: (H, W, 3) float32, display-referred, in [0, 1].

    transfer: 'auto' (float files are scene-linear, others display-referred), 'linear' (encode
    with the sRGB curve) or 'srgb' (values used as they are).
    """
    arr, is_float = read_image(path)
    channels = arr.shape[-1]
    rgb = np.repeat(arr[..., :1], 3, axis=-1) if channels < 3 else arr[..., :3]
    linear = transfer == "linear" or (transfer == "auto" and is_float)
    if not np.isfinite(rgb).all():
        raise InputError(f"image '{path}' contains NaN or infinite values; fix the file that produced it.")
    return encode_srgb(rgb) if linear else np.clip(rgb, 0.0, 1.0).astype(np.float32)


def matte_from_channels(arr: np.ndarray) -> np.ndarray:
    """The matte of an (H, W, C) image: grey images as they are; RGB(A) their RGB mean, except
    that an image whose colour is one flat value but whose alpha is not (ComfyUI's and many
    tools' RGBA masks: black RGB, the matte in alpha) gives its alpha."""
    channels = arr.shape[-1]
    if channels in (1, 2):
        colour, alpha = arr[..., 0], arr[..., 1] if channels == 2 else None
    else:
        colour = arr[..., :3].mean(-1)
        alpha = arr[..., 3] if channels >= 4 else None
    if alpha is not None and float(alpha.min()) < 1.0 and float(np.ptp(arr[..., : min(channels - 1, 3)])) == 0.0:
        return alpha
    return colour


def file_is_float(path: str | Path) -> bool:
    """Whether an image file stores floating-point values (EXR, HDR, float TIFF), from its header."""
    p = Path(path)
    if p.suffix.lower() in OIIO_SUFFIXES or p.suffix.lower() in (".tif", ".tiff"):
        oiio = _oiio_or_none() if p.suffix.lower() not in OIIO_SUFFIXES else require_oiio(f"reading '{p.name}'")
        if oiio is not None:
            inp = oiio.ImageInput.open(str(p))
            if inp is not None:
                fmt = str(inp.spec().format)
                inp.close()
                return fmt in ("half", "float", "double")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            return im.mode == "F"
    except (UnidentifiedImageError, OSError):
        return False


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header (no pixels decoded)."""
    p = Path(path)
    if p.suffix.lower() not in OIIO_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                return int(im.width), int(im.height)
        except (UnidentifiedImageError, OSError):
            if p.suffix.lower() not in (".tif", ".tiff"):
                raise InputError(f"cannot read image '{p}'; replace or remove the file.") from None
    oiio = require_oiio(f"reading {p.suffix} files ('{p.name}')")
    inp = oiio.ImageInput.open(str(p))
    if inp is None:
        raise InputError(f"cannot read image '{p}': {oiio.geterror()}. Replace or remove the file.")
    spec = inp.spec()
    inp.close()
    return int(spec.width), int(spec.height)


def to_uint16(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint16 with rounding (65535 = 1), clipped: the one 16-bit quantiser."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * 65535.0), 0, 65535).astype(np.uint16)


def write_png16(path: str | Path, pixels: np.ndarray) -> None:
    """Write (H, W, C) float pixels in [0, 1] (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) as a
    16-bit PNG, values stored as given (no premultiplication).

    Pillow cannot write 16-bit colour PNGs; this covers them where OpenImageIO (an optional
    extra, which ComfyUI users rarely have) is missing. A PNG is a signature, an IHDR chunk, the
    zlib-compressed rows (each led by filter byte 0) and IEND, each chunk with its CRC-32."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    samples = to_uint16(arr).astype(">u2")  # PNG stores samples big-endian
    rows = np.zeros((h, 1 + w * c * 2), dtype=np.uint8)
    rows[:, 1:] = samples.view(np.uint8).reshape(h, -1)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + \
        chunk(b"IEND", b"")
    Path(path).write_bytes(data)


def write_image(path: str | Path, pixels: np.ndarray, channel_names: tuple[str, ...], *, bits: int = 16) -> None:
    """Write (H, W, C) float pixels with OpenImageIO: an EXR as 32-bit float (ZIP compressed), any
    other format as ``bits``-bit integers (values clipped to [0, 1]); values are stored as given.
    Without OpenImageIO a 16-bit PNG is still written (:func:`write_png16`)."""
    p = Path(path)
    if bits == 16 and p.suffix.lower() == ".png" and _oiio_or_none() is None:
        write_png16(p, pixels)
        return
    oiio = require_oiio(f"writing '{p.name}'")
    arr = np.ascontiguousarray(pixels, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    is_exr = p.suffix.lower() == ".exr"
    fmt = oiio.FLOAT if is_exr else (oiio.UINT16 if bits == 16 else oiio.UINT8)
    spec = oiio.ImageSpec(arr.shape[1], arr.shape[0], arr.shape[2], fmt)
    spec.channelnames = channel_names
    if "A" in channel_names:
        spec.alpha_channel = channel_names.index("A")
    if is_exr:
        spec.attribute("compression", "zip")
    else:
        # Store the colour as given (straight or premultiplied, the caller's choice): without this
        # OpenImageIO takes it as premultiplied and divides it by alpha for PNG and TIFF.
        spec.attribute("oiio:UnassociatedAlpha", 1)
        arr = np.clip(arr, 0.0, 1.0)
    out = oiio.ImageOutput.create(str(p))
    if out is None or not out.open(str(p), spec):
        raise InputError(f"cannot write '{p}': {oiio.geterror()}; check the output folder.")
    try:
        if not out.write_image(arr):
            raise InputError(f"cannot write '{p}': {out.geterror()}; check the free disk space.")
    finally:
        out.close()
