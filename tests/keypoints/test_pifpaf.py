"""PifPaf backend: the real openpifpaf network and decoder (built offline) on ultralytics' bus.jpg.

openpifpaf is required here, not optional: a missing install fails these tests instead of skipping them.

With random weights the decoder finds nobody, so the module's network (random backbone) gets heads that make
its fields say "people here" (see :func:`_prime_heads`); the real decoder then builds real annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from keyreid_stream.contracts import NUM_KEYPOINTS
from keyreid_stream.keypoints.backends import create_backend
from keyreid_stream.keypoints.pifpaf import (
    WEIGHTS_FORMAT,
    PifPafPose,
    annotations_to_poses,
    import_openpifpaf,
    save_pifpaf_weights,
)
from keyreid_stream.keypoints.pose import PRIOR_LAYOUT, PersonPoses, PoseError, crop_boxes

BASE = "shufflenetv2k16"  # openpifpaf's default base network, built from scratch offline
PERSON_CELLS = np.array([4.0, 8.0], np.float32)  # primed pedestrian size, in feature cells (stride 16)




def _prime_heads(backend: PifPafPose, image: np.ndarray) -> None:
    """Give the random network heads under which the decoder finds upright people in ``image``.

    The CIF confidence becomes a random projection of the (random) backbone's features, scaled so that its
    logit varies with a standard deviation of 2 over ``image``: distinct peaks, no ties for the decoder to
    break by rounding. Every CIF cell points at itself with a wide scale (its high-resolution field passes the seed
    threshold), and every CAF cell connects two joints of :data:`PRIOR_LAYOUT` spanning 4 x 8 feature cells.
    """
    network = backend.network
    cif, caf = network.head_nets
    assert cif.meta.name == "cif" and caf.meta.name == "caf"
    assert cif.upsample_stride == 1 and caf.upsample_stride == 1  # one conv channel per field component
    import PIL.Image

    tensor = backend.preprocess(PIL.Image.fromarray(np.ascontiguousarray(image[..., ::-1])), [], {})[0]
    layout = PRIOR_LAYOUT * PERSON_CELLS
    with torch.no_grad():
        features = network.base_net(tensor[None])[0].flatten(1)  # (channels, cells)
        direction = torch.randn(cif.n_fields, features.shape[0], generator=torch.Generator().manual_seed(1))
        logits = direction @ features
        gain = 2.0 / logits.std(dim=1, keepdim=True)
        cif.conv.weight.view(cif.n_fields, cif.n_components, -1)[:, 1] = direction * gain
        cif_bias = cif.conv.bias.view(cif.n_fields, cif.n_components)  # [-, confidence, x, y, scale]
        cif_bias.zero_()
        cif_bias[:, 1] = -(logits.mean(dim=1) * gain[:, 0])
        cif_bias[:, 4] = 6.0
        # CAF components: [-, confidence, x1, y1, x2, y2, scale1, scale2]
        caf_bias = caf.conv.bias.view(caf.n_fields, caf.n_components)
        caf_bias.zero_()
        caf_bias[:, 1] = 4.0
        caf_bias[:, 6:8] = 6.0
        for field, (joint1, joint2) in enumerate(caf.meta.skeleton):
            delta = torch.from_numpy(layout[joint2 - 1] - layout[joint1 - 1])
            caf_bias[field, 2:4] = -delta / 2
            caf_bias[field, 4:6] = delta / 2


@pytest.fixture(scope="module")
def openpifpaf() -> Any:
    return import_openpifpaf()


@pytest.fixture(scope="module")
def backend(openpifpaf: Any, photo: np.ndarray) -> PifPafPose:
    torch.manual_seed(0)
    pose = PifPafPose(checkpoint=None, base_name=BASE, device="cpu")
    _prime_heads(pose, photo)
    return pose


@pytest.fixture(scope="module")
def photo(bus_photo: np.ndarray) -> np.ndarray:
    return bus_photo


@pytest.fixture(scope="module")
def crop(photo: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(photo[100:280, 10:90])  # 80 x 180: the man in the light coat


@pytest.fixture(scope="module")
def photo_poses(backend: PifPafPose, photo: np.ndarray) -> PersonPoses:
    return backend.detect([photo])[0]


def _assert_valid(poses: PersonPoses, width: int, height: int) -> None:
    count = len(poses)
    assert poses.boxes.dtype == poses.scores.dtype == poses.keypoints.dtype == np.float32
    assert poses.boxes.shape == (count, 4)
    assert poses.scores.shape == (count,)
    assert poses.keypoints.shape == (count, NUM_KEYPOINTS, 3)
    for array in (poses.boxes, poses.scores, poses.keypoints):
        assert np.isfinite(array).all()
    assert ((poses.scores >= 0) & (poses.scores <= 1)).all()
    confidence = poses.keypoints[..., 2]
    assert ((confidence >= 0) & (confidence <= 1)).all()
    assert (poses.keypoints[confidence == 0][:, :2] == 0).all()  # unknown joints are (0, 0, 0)
    assert (poses.boxes[:, 2] >= poses.boxes[:, 0]).all() and (poses.boxes[:, 3] >= poses.boxes[:, 1]).all()
    seen = poses.keypoints[confidence > 0]
    # Image pixels: inside the image up to the decoder's padding (not feature cells, not the padded tensor).
    assert (seen[:, 0] >= -16).all() and (seen[:, 0] <= width + 16).all()
    assert (seen[:, 1] >= -16).all() and (seen[:, 1] <= height + 16).all()


def _assert_same(actual: PersonPoses, expected: PersonPoses) -> None:
    """Equal up to float rounding: openpifpaf's decoder reuses its buffers, and their float32 values carry a
    per-call offset (its ``revision``), so one image decoded twice differs in the last bits (about 1e-6)."""
    assert len(actual) == len(expected)
    for name in ("boxes", "scores", "keypoints"):
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name), rtol=1e-5, atol=1e-4,
                                   err_msg=name)


def _differ(first: PersonPoses, second: PersonPoses) -> bool:
    if len(first) != len(second):
        return True
    return not np.allclose(first.keypoints, second.keypoints, atol=1e-2)


def _state_dicts_equal(first: Any, second: Any) -> None:
    a, b = first.state_dict(), second.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name].cpu(), b[name].cpu()), name


# --------------------------------------------------------------------------- detect / crops / boxes


def test_detect_photo_and_crop(backend: PifPafPose, photo: np.ndarray, crop: np.ndarray) -> None:
    found = backend.detect([photo, crop])
    assert len(found) == 2 and all(isinstance(poses, PersonPoses) for poses in found)
    for poses, image in zip(found, (photo, crop)):
        _assert_valid(poses, image.shape[1], image.shape[0])
    people = found[0]
    assert len(people) >= 2  # the primed fields hold several pedestrians on a 240 x 320 photo
    assert len(found[1]) >= 1
    seen = people.keypoints[..., 2] > 0
    assert seen.any(axis=1).all()
    heights = [np.ptp(person[mask, 1]) for person, mask in zip(people.keypoints, seen)]
    assert max(heights) > 3 * 16  # pixels: the primed person is 8 cells of 16 px tall, not 8 px


# photo, crop, photo, mirrored photo, other, crop: not a palindrome per size, so swapped results show
ORDER = (0, 1, 0, 2, 3, 1)


@pytest.fixture(scope="module")
def order_images(photo: np.ndarray, crop: np.ndarray) -> list[np.ndarray]:
    mirrored = np.ascontiguousarray(photo[:, ::-1])  # the photo's size, other people
    other = np.ascontiguousarray(photo[:200, 40:200])  # a third size
    return [photo, crop, mirrored, other]


@pytest.fixture(scope="module")
def singles(backend: PifPafPose, order_images: list[np.ndarray]) -> list[PersonPoses]:
    """Each image detected alone."""
    return [backend.detect([image])[0] for image in order_images]


def test_results_tell_the_images_apart(singles: list[PersonPoses]) -> None:
    for first in range(len(singles)):
        for second in range(first + 1, len(singles)):
            assert _differ(singles[first], singles[second]), (first, second)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_mixed_sizes_keep_input_order(
    backend: PifPafPose, order_images: list[np.ndarray], singles: list[PersonPoses], batch_size: int
) -> None:
    saved = backend.batch_size
    backend.batch_size = batch_size
    try:
        found = backend.detect([order_images[i] for i in ORDER])
    finally:
        backend.batch_size = saved
    assert len(found) == len(ORDER)
    for poses, i in zip(found, ORDER):
        _assert_same(poses, singles[i])
    _assert_same(found[2], found[0])  # the same image twice in one call


def test_detect_answers_in_image_pixels(backend: PifPafPose, photo: np.ndarray) -> None:
    """Not in the padded tensor's pixels: the decoder's joints moved back by the padding's top-left corner."""
    import PIL.Image

    image = np.ascontiguousarray(photo[:300, :200])  # padded to 209 x 305: 4 px left, 2 px top
    tensor, _, meta = backend.preprocess(PIL.Image.fromarray(np.ascontiguousarray(image[..., ::-1])), [], {})
    left, top = meta["valid_area"][:2]
    assert left > 0 and top > 0
    with torch.inference_mode():
        raw = backend.decoder.batch(backend.network, tensor[None], device=backend.device)[0]
    poses = backend.detect([image])[0]
    assert len(poses) == len(raw) > 0
    for person, annotation in zip(poses.keypoints, raw):
        seen = annotation.data[:, 2] > 0
        assert (person[:, 2] > 0).tolist() == seen.tolist()
        expected = annotation.data[seen, :2] - np.array([left, top])
        np.testing.assert_allclose(person[seen, :2], expected, atol=1e-3)


def test_detect_nothing(backend: PifPafPose) -> None:
    assert backend.detect([]) == []
    empty = backend.estimate_crops([])
    assert empty.shape == (0, NUM_KEYPOINTS, 3) and empty.dtype == np.float32


def test_estimate_crops_one_person_per_crop(backend: PifPafPose, photo: np.ndarray, crop: np.ndarray) -> None:
    tiny = np.ascontiguousarray(photo[:16, :16])  # a 1 x 1 feature map: nobody
    assert len(backend.detect([tiny])[0]) == 0
    keypoints = backend.estimate_crops([crop, tiny, crop])
    assert keypoints.shape == (3, NUM_KEYPOINTS, 3) and keypoints.dtype == np.float32
    assert (keypoints[1] == 0).all()
    assert (keypoints[0][:, 2] > 0).any()
    np.testing.assert_allclose(keypoints[2], keypoints[0], atol=1e-4)
    # the selected person is one of those detect() found in that crop
    candidates = backend.detect([crop])[0].keypoints
    assert min(np.abs(candidate - keypoints[0]).max() for candidate in candidates) < 1e-3


def test_estimate_boxes_answers_in_frame_coordinates(backend: PifPafPose, photo: np.ndarray) -> None:
    boxes = np.array([[60, 60, 180, 260], [10, 90, 100, 290]], np.float32)  # grown by 10%: inside
    keypoints = backend.estimate_boxes(photo, boxes, margin=0.1)
    assert keypoints.shape == (2, NUM_KEYPOINTS, 3) and keypoints.dtype == np.float32
    seen = keypoints[..., 2] > 0
    assert seen.any(axis=1).all()

    # the same crops, estimated alone, are offset by the crops' origins
    crops, origins = crop_boxes(photo, boxes, 0.1)
    in_crops = backend.estimate_crops(crops)
    assert (origins > 0).all()
    np.testing.assert_allclose(keypoints[..., 2], in_crops[..., 2], atol=1e-4)
    expected = (in_crops[..., :2] + origins[:, None])[seen]
    np.testing.assert_allclose(keypoints[seen][:, :2], expected, atol=1e-3)
    assert (keypoints[~seen] == 0).all()

    # the photo moved inside a bigger black frame: same people, moved by the same offset
    dx, dy = 40, 24
    frame = np.zeros((photo.shape[0] + dy + 30, photo.shape[1] + dx + 50, 3), np.uint8)
    frame[dy:dy + photo.shape[0], dx:dx + photo.shape[1]] = photo
    moved_boxes = boxes + np.array([dx, dy, dx, dy], np.float32)
    moved_crops = crop_boxes(frame, moved_boxes, 0.1)[0]
    assert [c.shape for c in moved_crops] == [c.shape for c in crops]  # nothing clipped, in either frame
    moved = backend.estimate_boxes(frame, moved_boxes, margin=0.1)
    np.testing.assert_allclose(moved[..., 2], keypoints[..., 2], atol=1e-4)
    np.testing.assert_allclose(moved[seen][:, :2], keypoints[seen][:, :2] + np.array([dx, dy]), atol=1e-3)


def test_estimate_boxes_without_boxes(backend: PifPafPose, photo: np.ndarray) -> None:
    keypoints = backend.estimate_boxes(photo, np.zeros((0, 4), np.float32))
    assert keypoints.shape == (0, NUM_KEYPOINTS, 3) and keypoints.dtype == np.float32


# --------------------------------------------------------------------------- annotations_to_poses


def _annotation(openpifpaf: Any, data: np.ndarray, **options: Any) -> Any:
    from openpifpaf.plugins.coco.constants import COCO_KEYPOINTS, COCO_PERSON_SKELETON

    ann = openpifpaf.Annotation(keypoints=COCO_KEYPOINTS, skeleton=COCO_PERSON_SKELETON)
    return ann.set(np.array(data, dtype=np.float32), **options)


def _joints(rng_seed: int, hidden: tuple[int, ...] = ()) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    data = np.column_stack([rng.uniform(20, 200, NUM_KEYPOINTS), rng.uniform(30, 300, NUM_KEYPOINTS),
                            rng.uniform(0.2, 1.0, NUM_KEYPOINTS)]).astype(np.float32)
    data[list(hidden), 2] = 0.0  # not seen, but with (garbage) coordinates
    return data


@pytest.mark.parametrize(
    ("options", "hidden", "expected_box"),
    [
        pytest.param({"fixed_score": 0.8}, (), None, id="all-joints-seen"),
        pytest.param({"fixed_score": 0.35}, (0, 3, 9, 16), None, id="hidden-joints"),
        pytest.param({"fixed_score": 0.5, "fixed_bbox": [10.0, 20.0, 30.0, 40.0]}, (1,),
                     [10.0, 20.0, 40.0, 60.0], id="fixed-xywh-box"),
        pytest.param({}, (2, 5), None, id="computed-score"),
    ],
)
def test_annotations_to_poses(
    openpifpaf: Any, options: dict[str, Any], hidden: tuple[int, ...], expected_box: list[float] | None
) -> None:
    data = _joints(len(hidden), hidden)
    ann = _annotation(openpifpaf, data, **options)
    other = _annotation(openpifpaf, _joints(99), fixed_score=0.9)
    poses = annotations_to_poses([ann, other])

    assert len(poses) == 2
    assert poses.boxes.dtype == poses.scores.dtype == poses.keypoints.dtype == np.float32
    seen = data[:, 2] > 0
    np.testing.assert_allclose(poses.keypoints[0][seen], data[seen], rtol=1e-6)
    assert (poses.keypoints[0][~seen] == 0).all()
    if expected_box is None:  # the seen joints' extent, as xyxy
        expected_box = [*data[seen, :2].min(axis=0), *data[seen, :2].max(axis=0)]
    np.testing.assert_allclose(poses.boxes[0], expected_box, rtol=1e-6)
    np.testing.assert_allclose(poses.scores, [float(ann.score), 0.9], rtol=1e-6)
    if "fixed_score" in options:
        assert poses.scores[0] == pytest.approx(options["fixed_score"])
    np.testing.assert_allclose(poses.keypoints[1], _joints(99), rtol=1e-6)  # order kept


def test_annotations_to_poses_hidden_nan_joint(openpifpaf: Any) -> None:
    data = _joints(3, hidden=(4,))
    data[4, :2] = np.nan
    poses = annotations_to_poses([_annotation(openpifpaf, data, fixed_score=0.6)])
    assert np.isfinite(poses.keypoints).all() and (poses.keypoints[0, 4] == 0).all()


def test_annotations_to_poses_empty() -> None:
    poses = annotations_to_poses([])
    assert isinstance(poses, PersonPoses) and len(poses) == 0
    assert poses.boxes.shape == (0, 4) and poses.scores.shape == (0,)
    assert poses.keypoints.shape == (0, NUM_KEYPOINTS, 3)


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def pickled_checkpoint(backend: PifPafPose, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pifpaf") / "checkpoint.pkl"
    torch.save({"model": backend.network, "epoch": 0}, path)
    return path


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ""])
def test_pickled_checkpoint_needs_allow_pickle(pickled_checkpoint: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"checkpoint{suffix}"
    path.write_bytes(pickled_checkpoint.read_bytes())
    with pytest.raises(PoseError, match="allow_pickle"):
        PifPafPose(str(path), device="cpu")


def test_pickled_checkpoint_loads_with_allow_pickle(backend: PifPafPose, pickled_checkpoint: Path) -> None:
    loaded = PifPafPose(str(pickled_checkpoint), allow_pickle=True, device="cpu")
    _state_dicts_equal(loaded.network, backend.network)
    assert not loaded.network.training


def test_broken_pickle_raises_pose_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(PoseError, match="could not load"):
        PifPafPose(str(path), allow_pickle=True, device="cpu")


def test_safetensors_round_trip(
    backend: PifPafPose, photo_poses: PersonPoses, photo: np.ndarray, tmp_path: Path
) -> None:
    from safetensors import safe_open

    target = save_pifpaf_weights(backend.network, tmp_path / "pifpaf.safetensors")
    assert target == tmp_path / "pifpaf.safetensors" and target.is_file()
    with safe_open(str(target), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == WEIGHTS_FORMAT and metadata["base_name"] == BASE

    loaded = PifPafPose(str(target), device="cpu")  # no allow_pickle needed
    _state_dicts_equal(loaded.network, backend.network)
    assert len(photo_poses) > 0
    _assert_same(loaded.detect([photo])[0], photo_poses)


def _other_format(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})


def _no_metadata(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(path))


def _wrong_tensors(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": WEIGHTS_FORMAT, "base_name": BASE})


def _unknown_base(path: Path) -> None:
    from safetensors.torch import save_file

    metadata = {"format": WEIGHTS_FORMAT, "base_name": "nonet"}
    save_file({"weight": torch.zeros(3)}, str(path), metadata=metadata)


def _no_base_name(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": WEIGHTS_FORMAT})


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not safetensors")


def _missing(path: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (_other_format, "not a converted PifPaf weights file"),
        (_no_metadata, "not a converted PifPaf weights file"),
        (_no_base_name, "not a converted PifPaf weights file"),
        (_wrong_tensors, "does not fit"),
        (_unknown_base, "unknown openpifpaf base network"),
        (_garbage, "could not read"),
        (_missing, "could not read"),
    ],
)
def test_bad_safetensors_raise_pose_error(
    openpifpaf: Any, tmp_path: Path, write: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "weights.safetensors"
    write(path)
    with pytest.raises(PoseError, match=message):
        PifPafPose(str(path), device="cpu")


def test_unknown_base_name_lists_known_ones(openpifpaf: Any) -> None:
    with pytest.raises(PoseError, match="unknown openpifpaf base network") as error:
        PifPafPose(checkpoint=None, base_name="shufflenet-nope", device="cpu")
    assert BASE in str(error.value) and "resnet50" in str(error.value)


def test_checkpoint_and_base_name_exclude_each_other(openpifpaf: Any, tmp_path: Path) -> None:
    with pytest.raises(PoseError, match="not both"):
        PifPafPose(str(tmp_path / "weights.safetensors"), base_name=BASE, device="cpu")


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_unknown_checkpoint_name(
    openpifpaf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow_pickle: bool
) -> None:
    monkeypatch.chdir(tmp_path)  # the name is no file here
    message = "neither a file nor a known name" if allow_pickle else "allow_pickle"
    with pytest.raises(PoseError, match=message) as error:
        PifPafPose("shufflenetv2k16-no-such-checkpoint", allow_pickle=allow_pickle, device="cpu")
    if allow_pickle:
        assert "shufflenetv2k30" in str(error.value)  # the known names are listed


def test_create_backend_builds_pifpaf(backend: PifPafPose, photo: np.ndarray) -> None:
    built = create_backend("pifpaf", checkpoint=None, base_name=BASE, device="cpu")
    assert isinstance(built, PifPafPose) and built.name == "pifpaf"
    assert built.network.base_net.name == BASE
    assert str(built.device) == "cpu"
    assert list(built.network.state_dict()) == list(backend.network.state_dict())
    _assert_valid(built.detect([photo])[0], photo.shape[1], photo.shape[0])
    built.close()
    assert built.network is None


def test_torchvision_based_bases_build_offline_with_random_weights() -> None:
    backend = PifPafPose(None, base_name="mobilenetv3small", device="cpu")  # would download ImageNet weights
    assert backend.network.base_net.name == "mobilenetv3small"
    assert openpifpaf_pretrained_flags_restored()


def openpifpaf_pretrained_flags_restored() -> bool:
    import openpifpaf

    return openpifpaf.network.basenetworks.MobileNetV3.pretrained is True


@pytest.fixture
def checkpoint_server(pickled_checkpoint: Path) -> Iterator[str]:
    """A local HTTP server serving the pickled checkpoint (openpifpaf's names resolve to URLs like this)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(pickled_checkpoint.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{pickled_checkpoint.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_checkpoint_names_download_once_into_the_torch_hub_cache(
    openpifpaf: Any, backend: PifPafPose, checkpoint_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setitem(openpifpaf.CHECKPOINT_URLS, "test-k16", checkpoint_server)
    with pytest.raises(PoseError, match="allow_pickle"):
        PifPafPose("test-k16", device="cpu")
    cached = tmp_path / "hub" / "checkpoints" / "checkpoint.pkl"
    assert not cached.exists()  # refused before anything was downloaded
    loaded = PifPafPose("test-k16", allow_pickle=True, device="cpu")
    assert cached.is_file()
    _state_dicts_equal(loaded.network, backend.network)
    unreachable = "http://127.0.0.1:1/checkpoint.pkl"  # same file name, nothing listening
    monkeypatch.setitem(openpifpaf.CHECKPOINT_URLS, "test-k16", unreachable)
    PifPafPose("test-k16", allow_pickle=True, device="cpu")  # from the cache: the URL is not used again
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty-hub"))
    with pytest.raises(PoseError, match="could not download openpifpaf checkpoint 'test-k16'"):
        PifPafPose("test-k16", allow_pickle=True, device="cpu")


def test_convert_command_writes_weights_that_load_without_pickle(
    backend: PifPafPose, pickled_checkpoint: Path, tmp_path: Path,
) -> None:
    from keyreid_stream.cli import main

    target = tmp_path / "k16.safetensors"
    assert main(["keypoints", "convert-pifpaf", str(pickled_checkpoint), str(target), "--allow-pickle"]) == 0
    _state_dicts_equal(PifPafPose(str(target), device="cpu").network, backend.network)
