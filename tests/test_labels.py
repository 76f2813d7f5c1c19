import numpy as np
import pytest

from verilabel.labels import Box, Classification, Detection, Keypoints, Mask, Polygon, rle_decode, rle_encode


def test_box_from_pixels_clips_to_the_image_and_is_relative():
    box = Box.from_xyxy_pixels(-10, 20, 110, 70, width=100, height=50)
    assert box.as_tuple() == pytest.approx((0.0, 0.4, 1.0, 0.6))
    assert box.to_pixels(100, 50) == (0, 20, 100, 30)


@pytest.mark.parametrize("args", [(0.5, 0.5, 0.6, 0.1), (-0.2, 0, 0.1, 0.1), (0, 0, 1.5, 1), (float("nan"), 0, 0, 0)])
def test_box_outside_the_image_is_rejected(args):
    with pytest.raises(ValueError):
        Box(*args)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (16, 9)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    for mask in (rng.random(shape) > 0.5, np.ones(shape, bool), np.zeros(shape, bool)):
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == mask.size
        np.testing.assert_array_equal(rle_decode(rle), mask)


def test_rle_is_column_major_and_starts_with_zeros():
    mask = np.array([[1, 0], [1, 1]], bool)
    assert rle_encode(mask)["counts"] == [0, 2, 1, 1]


def test_mask_holds_exactly_one_representation():
    with pytest.raises(ValueError):
        Mask()
    with pytest.raises(ValueError):
        Mask(array=np.ones((2, 2), bool), path="x.png")
    with pytest.raises(ValueError):
        Mask(array=np.ones((2, 2, 2), bool))


def test_labels_validate_class_and_confidence():
    with pytest.raises(ValueError):
        Classification("", 0.5)
    with pytest.raises(ValueError):
        Classification("cat", 1.5)
    with pytest.raises(ValueError):
        Detection("cat", (0, 0, 1, 1), 0.5)  # type: ignore[arg-type]
    a, b = Detection("cat", Box(0, 0, 1, 1), 0.5), Detection("cat", Box(0, 0, 1, 1), 0.5)
    assert a.id != b.id and len(a.id) == 24


def test_polygon_and_keypoints_round_trip_json():
    polygon = Polygon((((0.1, 0.1), (0.5, 0.1), (0.3, 0.4)),))
    assert Polygon.from_json(polygon.to_json()) == polygon
    keypoints = Keypoints(((0.1, 0.2), (0.3, 0.4)), ("a", "b"), (1.0, 0.5))
    assert Keypoints.from_json(keypoints.to_json()) == keypoints
    with pytest.raises(ValueError):
        Polygon((((0.1, 0.1), (0.5, 0.1)),))
    with pytest.raises(ValueError):
        Keypoints(((0.1, 0.2),), ("a", "b"))


def test_label_ids_are_unique_time_ordered_and_immune_to_a_library_seeding_random():
    import random

    from verilabel.labels import new_label_id

    ids = [new_label_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 24 for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)  # the millisecond prefix never goes back
    random.seed(0)
    first = new_label_id()
    random.seed(0)
    assert new_label_id()[12:] != first[12:]
