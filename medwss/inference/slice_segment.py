"""``medwss segment`` on a slice-folder set: one lossless PNG mask per slice, at the slice's own size.

Each patient's slices are stacked in the spec's order and turned to RAS (``SliceStack.processed``), exactly as
training saw them; the bundle's inferer segments the stack as one volume; the mask is resized back (nearest),
flipped back to the image's orientation and written as ``<out>/<image path under the root>.png`` (0 background,
1 the bundle's ROI), the layout ``medwss eval --spec`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.errors import MedwssError


def segment_slice_set(
    root: str | Path,
    spec: Any,
    out: str | Path,
    segmenter: Any,
    progress: Any = None,
) -> list[Path]:
    """Segment every patient of a slice set; returns the PNG masks written.

    Raises:
        MedwssError: a bad slice set, an output folder inside or equal to the data set, a bundle that needs an
            organ prior the spec does not give.
    """
    import torch.nn.functional as F

    from medwss.data.slice_folder import SliceStack
    from medwss.metrics.evaluate import slice_prediction_path

    root, out = Path(root), Path(out)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise MedwssError(out, "refusing to write masks inside the slice set (its inputs); give another -o folder")
    if segmenter.region == "prior" and spec.prior is None:
        raise MedwssError(root, "this bundle needs an organ prior: give the slice spec a 'prior' rule")
    written: list[Path] = []
    for patient in spec.discover(root):
        stack = SliceStack(root, spec, patient)
        data = stack.processed(segmenter.working_size, crop_margin=segmenter.crop_margin)
        image = data["image"]
        if segmenter.region == "prior":
            image = torch.cat([image, data["prior"].float()], dim=0)
        pred = segmenter.inferer(image.unsqueeze(0), segmenter.network)[0]  # (1, W, W, Z)
        first = spec.reading.image(patient.rows[0].image)
        size = tuple(first.shape[1:])  # (x, y)
        x0, x1, y0, y1 = data["crop_box"]  # where the working grid lies on the (RAS-turned) slices
        boxed = torch.as_tensor(pred)[0].float().permute(2, 0, 1)[:, None]  # (Z, 1, W, W)
        boxed = F.interpolate(boxed, size=(x1 - x0, y1 - y0), mode="nearest-exact")[:, 0].numpy() > 0.5
        mask = np.zeros((boxed.shape[0], *size), dtype=bool)  # (Z, x, y)
        mask[:, x0:x1, y0:y1] = boxed
        flips = [axis + 1 for axis, code in ((0, "L"), (1, "P")) if spec.orientation[axis] == code]
        if flips:
            mask = np.flip(mask, flips)
        for z, row in enumerate(patient.rows):
            slice_mask = mask[z]
            if spec.prior is not None:  # bound the mask by the prior at full size too (as for volumes)
                slice_mask = slice_mask & spec.prior(spec.read_mask(row, size))
            target = slice_prediction_path(out, root, row.image)
            written.append(write_png_mask(slice_mask.T.astype(np.uint8), target))  # (x, y) -> (rows, cols)
        if progress is not None:
            progress(1)
    return written


def write_png_mask(mask: np.ndarray, target: Path) -> Path:
    """A (rows, cols) uint8 label map as a lossless grey PNG, through a temporary file."""
    from PIL import Image

    from medwss.runtime.atomic import atomic_output

    try:
        with atomic_output(target) as tmp:
            Image.fromarray(np.ascontiguousarray(mask), mode="L").save(tmp, format="PNG")
    except OSError as err:
        raise MedwssError(target, f"cannot write: {err.strerror or err}") from None
    return target
