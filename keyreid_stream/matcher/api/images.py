"""Decoding untrusted JPEG and PNG bytes with a pixel limit that holds whatever the file's first header claims.

Image search decodes person crops sent over HTTP, and ingest checks the JPEG thumbnails the workers send. Both are
untrusted: a crafted file of a few hundred bytes can declare a 30000 x 30000 frame, and a decoder allocates what
the frame header it reads says. So before anything is decoded, :func:`frame_sizes` walks the whole file the way
libjpeg (OpenCV's JPEG decoder) and libpng walk it, and :func:`decode_image` refuses the file unless **every**
frame header in it is within the limit:

* JPEG: every marker segment from the start of image to the end of image, skipping the bytes libjpeg skips
  (garbage before a marker, fill bytes, the entropy-coded data of each scan with its stuffed bytes and restart
  markers). Each start-of-frame segment (baseline, extended, progressive, lossless, arithmetic, hierarchical:
  every ``SOFn``) counts; a height of 0 (to be set by a later DNL marker) is refused, and so is a file with more
  than :data:`MAX_JPEG_SCANS` scans (each scan of a progressive file passes over the whole frame again).
* PNG: the ``IHDR`` chunk, which must come first, and the frame control chunk (``fcTL``) of every animation
  frame.

Then OpenCV decodes it, and any error of the decoder becomes an :class:`ImageError` (a ``ValueError``), as does
a result whose size differs from the limit. Nothing here raises anything else for any input.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["JPEG_START", "MAX_JPEG_SCANS", "PNG_START", "ImageError", "check_image", "decode_image", "frame_sizes"]

JPEG_START = b"\xff\xd8\xff"
PNG_START = b"\x89PNG\r\n\x1a\n"
MAX_JPEG_SCANS = 100
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 reserved (JPG), CC DAC
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM and RST0..RST7 have no length field
_EOI, _SOS = 0xD9, 0xDA
_PNG_CHUNK = struct.Struct(">I4s")


class ImageError(ValueError):
    """The bytes are not an image this module decodes, or a frame in them is larger than the limit."""


def _jpeg_sizes(data: bytes) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    scans, position, end = 0, 2, len(data)  # libjpeg reads the start-of-image marker as the first two bytes
    while True:
        position = data.find(b"\xff", position)  # libjpeg skips anything before a marker (with a warning)
        if position < 0:
            break
        while position < end and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= end:
            break
        marker = data[position]
        position += 1
        if marker == 0x00 or marker in _STANDALONE:  # a stuffed 0xFF in entropy-coded data, or RSTn / TEM
            continue
        if marker == _EOI:
            break
        if position + 2 > end:
            raise ImageError(f"JPEG: truncated segment header of marker FF{marker:02X}")
        length = struct.unpack_from(">H", data, position)[0]
        if length < 2:
            raise ImageError(f"JPEG: segment FF{marker:02X} with length {length}")
        if marker in _SOF_MARKERS:
            if length < 8 or position + 7 > end:
                raise ImageError(f"JPEG: truncated frame header (FF{marker:02X})")
            height, width = struct.unpack_from(">HH", data, position + 3)
            sizes.append((width, height))
        elif marker == _SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(f"JPEG: more than {MAX_JPEG_SCANS} scans")
            if not sizes:
                raise ImageError("JPEG: a scan before any frame header")
        position += length  # after a scan header, the loop then skips its entropy-coded data
    if not sizes:
        raise ImageError("JPEG: no frame header")
    return sizes


def _png_sizes(data: bytes) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    position = len(PNG_START)
    while position + _PNG_CHUNK.size <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, position)
        body = data[position + 8: position + 8 + length]
        if not sizes and kind != b"IHDR":
            raise ImageError(f"PNG: the first chunk is {kind!r:.20}, not IHDR")
        if kind in (b"IHDR", b"fcTL"):
            offset = 0 if kind == b"IHDR" else 4  # fcTL: sequence number, then width and height
            if len(body) < offset + 8:
                raise ImageError(f"PNG: truncated {kind.decode('latin-1')} chunk")
            sizes.append(struct.unpack_from(">II", body, offset))
        if kind == b"IEND":
            break
        position += 12 + length  # length, type, data, CRC
    if not sizes:
        raise ImageError("PNG: no IHDR chunk")
    return sizes


def frame_sizes(data: bytes) -> list[tuple[int, int]]:
    """(width, height) of every frame header in a JPEG or PNG file, in file order; :class:`ImageError` when the
    bytes are neither, or their structure is broken before the sizes can be read."""
    if data.startswith(JPEG_START):
        return _jpeg_sizes(data)
    if data.startswith(PNG_START):
        return _png_sizes(data)
    raise ImageError("not a JPEG or PNG image")


def _check_sizes(data: bytes, max_pixels: int, what: str) -> None:
    for width, height in frame_sizes(data):
        if width < 1 or height < 1:
            raise ImageError(f"the {what} declares a frame of {width} x {height} pixels")
        if width * height > max_pixels:
            raise ImageError(f"the {what} declares a frame of {width} x {height} pixels, more than the limit of "
                             f"{max_pixels}")


def _imdecode(data: bytes, flags: int, what: str) -> np.ndarray:
    import cv2  # the matcher decodes images only for image search and thumbnail checks

    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error:  # e.g. OpenCV's own size limit; its message names source files, not the cause
        raise ImageError(f"the {what} could not be decoded (OpenCV refused it)") from None
    if decoded is None or decoded.size == 0:
        raise ImageError(f"the {what} could not be decoded")
    return decoded


def decode_image(data: bytes, max_pixels: int, what: str = "image") -> np.ndarray:
    """Decode JPEG or PNG bytes into a (H, W, 3) uint8 BGR image, refusing any file with a frame of more than
    ``max_pixels`` pixels (or of width or height 0) before decoding it. Raises only :class:`ImageError`."""
    import cv2

    data = bytes(data)
    _check_sizes(data, max_pixels, what)
    decoded = _imdecode(data, cv2.IMREAD_COLOR, what)
    if decoded.ndim != 3 or decoded.shape[2] != 3 or decoded.shape[0] * decoded.shape[1] > max_pixels:
        raise ImageError(f"the {what} decoded to an image of shape {decoded.shape}")  # never trust the decoder
    return decoded


def check_image(data: bytes, max_pixels: int, what: str = "image") -> None:
    """What :func:`decode_image` checks, for less: the whole file is decoded (every scan's entropy-coded data),
    at an eighth of its size and in gray, which skips most of the work after it. Raises only :class:`ImageError`."""
    import cv2

    data = bytes(data)
    _check_sizes(data, max_pixels, what)
    _imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8, what)
