"""Photos in and out of the one pipeline: which files are photos, where label maps go, the postprocessing steps.

``medwss segment photo.jpg --bundle bundles/coco`` runs the same ``Segmenter`` and ``SelfPlayInferer`` as scans
(``medwss.inference.segment``); only reading and writing differ. The label map is computed at the working size and
resized back to the photo's own size by nearest neighbour (``ResizeToPhotod``); it is written as a VOC-palette PNG
(pixel value = class label, 0 background, ``WritePhotoLabelsd``), so ``medwss eval`` and VOC tools read it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform

from medwss.errors import MedwssError

logger = logging.getLogger(__name__)


def photo_datalist(folder: str | Path) -> list[dict[str, str]]:
    """``[{image: path}]`` for every photo in ``folder`` (``inference.yaml`` ``dataset``)."""
    from medwss.data.discovery import find_photos

    return [{"image": str(p)} for p in find_photos([folder])]


def photo_output_paths(photos: Sequence[Path], out: Path | None, method: str) -> list[Path]:
    """``out`` itself for one photo and a ``.png`` ``out``, else ``out/<stem>.png``; default ``./<stem>_<method>.png``.

    Raises:
        MedwssError: two photos with the same stem, or an output that is an input.
    """
    if out is not None and len(photos) == 1 and out.suffix.lower() == ".png" and not out.is_dir():
        paths = [out]
    elif out is not None:
        if out.exists() and not out.is_dir():
            raise MedwssError(out, "for several photos, -o must be a folder")
        paths = [out / f"{p.stem}.png" for p in photos]
    else:
        paths = [Path(f"{p.stem}_{method}.png") for p in photos]
    if len({p.resolve() for p in paths}) != len(paths):
        raise MedwssError(out or Path("."), "two photos share a name; their label maps would overwrite each other")
    inputs = {p.resolve() for p in photos}
    for p in paths:
        if p.resolve() in inputs:
            raise MedwssError(p, "refusing to overwrite an input photo")
    return paths


def overlay_path(label_png: Path) -> Path:
    """``<stem>_overlay.png`` beside the label map."""
    return label_png.with_name(f"{label_png.stem}_overlay.png")


def draw_photo_overlay(
    rgb: np.ndarray, labels: np.ndarray, out: str | Path, names: Sequence[str], title: str = ""
) -> Path:
    """The photo (3, H, W) in [0, 1] beside it with the label map in VOC colours, a legend of the classes found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from medwss.data.natural.classes import voc_palette
    from medwss.viz.figures import save_figure

    image = np.clip(np.asarray(rgb, dtype=np.float32).transpose(1, 2, 0), 0, 1)
    colours = voc_palette()[np.asarray(labels, dtype=np.uint8)] / 255.0
    blend = np.where((np.asarray(labels) > 0)[..., None], 0.45 * image + 0.55 * colours, image)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    axes[0].imshow(image)
    axes[1].imshow(blend)
    for ax in axes:
        ax.axis("off")
    found = [int(k) for k in np.unique(labels) if 0 < k <= len(names)]
    handles = [Patch(color=voc_palette()[k] / 255.0, label=names[k - 1]) for k in found]
    if handles:
        axes[1].legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)


class ResizeToPhotod(MapTransform):
    """Resize ``pred`` (1, S, S) back to the photo's own size (nearest: labels are not averaged), as uint8."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medwss.data.natural.dataset import ORIGINAL_SIZE, resize_labels

        d = dict(data)
        size = tuple(int(s) for s in torch.as_tensor(d[ORIGINAL_SIZE]).reshape(-1).tolist())
        for key in self.key_iterator(d):
            d[key] = resize_labels(torch.as_tensor(d[key]).reshape(d[key].shape[-2:]), size)[None]
        return d


class WritePhotoLabelsd(MapTransform):
    """Write ``pred`` (1, H, W), after ``ResizeToPhotod``, as ``<output_dir>/<stem>.png`` (atomic)."""

    def __init__(self, keys: str = "pred", output_dir: str | Path = "./medwss_seg") -> None:
        super().__init__(keys)
        self.output_dir = Path(output_dir)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medwss.data.natural.voc import write_label_png

        d = dict(data)
        source = Path(str(d["image_file"]))
        for key in self.key_iterator(d):
            labels = np.asarray(d[key])[0]
            d[f"{key}_file"] = str(write_label_png(labels, self.output_dir / f"{source.stem}.png"))
        return d


def segment_photos(
    photos: Sequence[str | Path],
    out: str | Path | None,
    bundle: str | Path,
    method: str = "rlsp",
    overlay: bool = True,
    task: Any = None,
) -> list[Path]:
    """Segment photos with a photo bundle; returns the label maps written (overlays beside them)."""
    from medwss.inference.segment import Segmenter
    from medwss.runtime.progress import ProgressTask

    task = task or ProgressTask()
    from medwss.data.discovery import find_photos

    paths = find_photos(photos)
    outs = photo_output_paths(paths, Path(out) if out else None, method)
    segmenter = Segmenter(bundle, method)
    task.set_total(len(paths))
    written = []
    for photo, target in zip(paths, outs, strict=True):
        task.describe(f"segmenting {photo.name}")
        written += segmenter.segment(photo, target, overlay=overlay_path(target) if overlay else None)
        task.advance(1)
    return written
