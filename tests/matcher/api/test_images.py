"""Decoding untrusted images: hostile JPEG and PNG files, built here, whose first header hides the size of the frame
a decoder would allocate, are refused before decoding, and decoding them costs no memory (peak resident size of a
child process, measured); honest images of every common kind still decode."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zlib

import cv2
import httpx
import numpy as np
import pytest

from keyreid_stream.matcher.api.images import (
    MAX_JPEG_SCANS,
    ImageError,
    check_image,
    decode_image,
    frame_sizes,
)

LIMIT = 4096 * 4096
HUGE = (8000, 8000)  # 192 MB decoded: enough to see, small enough for a shared CI machine


def jpeg(width: int, height: int, *, progressive: bool = False, gray: bool = False) -> bytes:
    image = np.random.default_rng(width * height).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if gray else image,
                            [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return data.tobytes()


def png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def _sof(data: bytes) -> int:
    """Where OpenCV's encoder put the frame header (SOF0 or SOF2, after the JFIF, DQT segments)."""
    return min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i > 0)


def with_size(data: bytes, width: int, height: int) -> bytes:
    at = _sof(data)
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


def junk_before_frame(data: bytes, width: int, height: int) -> bytes:
    """One byte of garbage before the frame header: libjpeg skips it (with a warning) and reads the frame, a
    header check that stops at the first non-marker byte never sees it."""
    data = with_size(data, width, height)
    at = _sof(data)
    return data[:at] + b"\x00" + data[at:]


def second_frame(data: bytes, width: int, height: int) -> bytes:
    """A small frame, then a second frame header declaring another size before the end of the image."""
    at = _sof(data)
    length = struct.unpack_from(">H", data, at + 2)[0]
    segment = data[at: at + 2 + length]
    return data[:-2] + segment[:5] + struct.pack(">HH", height, width) + segment[9:] + data[-2:]


def many_scans(data: bytes, copies: int) -> bytes:
    first_scan = data.find(b"\xff\xda")
    return data[:first_scan] + data[first_scan:-2] * copies + data[-2:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_frame(data: bytes, width: int, height: int) -> bytes:
    """An animation frame control chunk (APNG fcTL) declaring a frame larger than the image."""
    end_of_ihdr = 8 + 25
    fctl = _chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, width, height, 0, 0, 1, 10, 0, 0))
    return data[:end_of_ihdr] + _chunk(b"acTL", struct.pack(">II", 1, 0)) + fctl + data[end_of_ihdr:]


def png_ihdr(width: int, height: int) -> bytes:
    data = png(8, 8)
    return data[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + data[33:]


HOSTILE = {
    "jpeg: junk byte hides the frame header": (junk_before_frame(jpeg(16, 16), *HUGE), "declares a frame of 8000"),
    "progressive jpeg: junk byte hides it": (junk_before_frame(jpeg(16, 16, progressive=True), *HUGE),
                                             "declares a frame of 8000"),
    "jpeg: a second frame header": (second_frame(jpeg(16, 16), *HUGE), "declares a frame of 8000"),
    "jpeg: over OpenCV's own limit": (junk_before_frame(jpeg(16, 16), 40000, 40000), "declares a frame of 40000"),
    "jpeg: height 0 (set by a DNL marker)": (with_size(jpeg(16, 16), 16, 0), "16 x 0 pixels"),
    "progressive jpeg: too many scans": (many_scans(jpeg(16, 16, progressive=True), 12),
                                         f"more than {MAX_JPEG_SCANS} scans"),
    "jpeg: a scan before any frame": (b"\xff\xd8\xff\xda\x00\x02" + b"\x00" * 64 + b"\xff\xd9", "scan before"),
    "jpeg: no frame at all": (b"\xff\xd8\xff\xe0\x00\x04ab\xff\xd9", "no frame header"),
    "jpeg: truncated frame header": (jpeg(16, 16)[: _sof(jpeg(16, 16)) + 6], "truncated frame header"),
    "png: large IHDR": (png_ihdr(*HUGE), "declares a frame of 8000"),
    "png: an animation frame larger than the image": (png_with_frame(png(16, 16), *HUGE), "declares a frame"),
    "png: no IHDR first": (b"\x89PNG\r\n\x1a\n" + _chunk(b"tEXt", b"a\x00b") + png(8, 8)[8:], "not IHDR"),
    "not an image": (b"GIF89a\x01\x00\x01\x00", "not a JPEG or PNG"),
    "broken jpeg body": (jpeg(16, 16)[:-300], "could not be decoded"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_images_are_refused(name: str) -> None:
    data, match = HOSTILE[name]
    with pytest.raises(ImageError, match=match):
        decode_image(data, LIMIT)


@pytest.mark.parametrize(("data", "sizes"), [
    (junk_before_frame(jpeg(16, 16), *HUGE), [HUGE]),
    (second_frame(jpeg(16, 16), *HUGE), [(16, 16), HUGE]),
    (png_with_frame(png(16, 16), *HUGE), [(16, 16), HUGE]),
])
def test_frame_sizes_reads_every_frame_header(data: bytes, sizes: list[tuple[int, int]]) -> None:
    assert frame_sizes(data) == sizes


@pytest.mark.parametrize(("data", "shape"), [
    (jpeg(48, 96), (96, 48, 3)), (jpeg(640, 480, progressive=True), (480, 640, 3)), (jpeg(33, 17, gray=True),
                                                                                    (17, 33, 3)),
    (png(40, 20), (20, 40, 3)), (jpeg(4096, 4), (4, 4096, 3)),
])
def test_honest_images_decode(data: bytes, shape: tuple[int, ...]) -> None:
    assert decode_image(data, LIMIT).shape == shape


def test_the_limit_is_inclusive() -> None:
    assert decode_image(jpeg(64, 32), 64 * 32).shape == (32, 64, 3)
    with pytest.raises(ImageError, match="more than the limit of 2047"):
        decode_image(jpeg(64, 32), 64 * 32 - 1)


_CHILD = textwrap.dedent("""
    import json, resource, sys
    from keyreid_stream.matcher.api.images import ImageError, decode_image
    cases, small, limit = json.loads(sys.stdin.read())
    decode_image(bytes.fromhex(small), limit)  # loads OpenCV and its decoders
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused = 0
    for data in cases:
        try:
            decode_image(bytes.fromhex(data), limit)
        except ImageError:
            refused += 1
    print(json.dumps({"refused": refused, "peak_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      - before}))
""")


def test_hostile_images_cost_no_memory() -> None:
    """Every hostile image, decoded in a fresh process: the peak resident size grows by less than 16 MiB (one
    of them decoded would add 192 MB or more)."""
    cases = [data.hex() for data, _ in HOSTILE.values()]
    result = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([cases, jpeg(16, 16).hex(), LIMIT]),
                            capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    assert report["refused"] == len(cases)
    assert report["peak_growth_kib"] < 16 * 1024, report


@pytest.mark.parametrize("name", ["jpeg: junk byte hides the frame header", "jpeg: over OpenCV's own limit",
                                  "progressive jpeg: too many scans", "png: an animation frame larger than the image",
                                  "broken jpeg body"])
def test_image_search_answers_400(shared, serve, crop_embedder, name: str) -> None:
    from keyreid_stream.matcher.api.queries import MatcherQueries

    data, match = HOSTILE[name]
    server = serve(MatcherQueries(shared.client, shared.keys, shared.index, embed_crop=crop_embedder))
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    response = httpx.post(f"{server.url}/search/image", content=data, headers={"Content-Type": kind}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request" and match in response.json()["detail"]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_check_image_refuses_what_decode_image_refuses(name: str) -> None:
    with pytest.raises(ImageError):
        check_image(HOSTILE[name][0], LIMIT)
    check_image(jpeg(640, 480, progressive=True), LIMIT)
