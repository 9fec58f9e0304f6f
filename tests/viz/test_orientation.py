"""Every PNG shows a scan the same way round: segment overlays (file grid) and replay strips (RAS working grid)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medwss.data.io import Geometry
from medwss.data.transforms import volume_transforms
from medwss.viz.overlay import RAS, axis_codes, display_slice, method_free_slices

SHAPE = (24, 16, 5)  # x, y, z: not square, so a transposed view cannot match


@pytest.mark.parametrize(
    ("direction", "codes"),
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), ("L", "P", "S")),
        ((-1, 0, 0, 0, -1, 0, 0, 0, 1), ("R", "A", "S")),
        ((0, 1, 0, -1, 0, 0, 0, 0, 1), ("A", "L", "S")),
    ],
)
def test_axis_codes(direction, codes):
    assert axis_codes(direction) == codes


@pytest.mark.parametrize(
    "direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, 1)]
)
def test_file_grid_and_working_grid_are_shown_the_same_way_round(tmp_path, direction):
    """A marker at the patient's right-anterior corner lands in the same corner of the file-grid view (segment
    overlays) and of the RAS working-grid view (replay), whatever the file's orientation."""
    array = np.zeros(SHAPE, np.float32)
    array[..., :] = 10.0
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)))
    image.SetDirection(direction)
    # Put the marker where the patient's right-anterior is in this file (LPS: right = -x, anterior = -y).
    rx = 0 if direction[0] > 0 else SHAPE[0] - 1
    ay = 0 if direction[4] > 0 else SHAPE[1] - 1
    sl = (slice(max(rx - 2, 0), rx + 3), slice(max(ay - 2, 0), ay + 3))
    marked = array.copy()
    marked[sl[0], sl[1], :] = 500.0
    image = sitk.GetImageFromArray(np.transpose(marked, (2, 1, 0)))
    image.SetDirection(direction)
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(image, str(path))

    file_view = display_slice(marked[..., 2], axis_codes(Geometry.of(image).direction))
    working = volume_transforms("mr", working_size=32)({"image": str(path)})["image"]
    work_view = display_slice(np.asarray(working[0, ..., 2]), RAS[:2])
    for view in (file_view, work_view):
        h, w = view.shape
        corner = view[: h // 4, : w // 4]  # top left: anterior, patient's right (radiological view)
        assert corner.mean() > view.mean() * 2, view


def test_method_free_slices_follow_the_prior_or_the_centre():
    assert method_free_slices(20) == [5, 7, 9, 10, 12, 14]
    prior = np.zeros((4, 4, 20), bool)
    prior[..., 2:5] = True
    assert method_free_slices(20, prior) == [2, 3, 4]
    assert method_free_slices(1) == [0]
