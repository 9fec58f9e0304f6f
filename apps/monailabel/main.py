"""MONAI Label app: every medwss bundle under ``bundles/`` served as a segmentation model, offline.

A medwss bundle segments with a presence detector, an agent and ``SelfPlayInferer``, then maps the mask back onto
the scan's own grid. MONAI Label's ``BundleInferTask`` runs one network between its own loader and writer, so it
cannot express that; each bundle is served instead by ``MedwssInferTask``, which runs
``medwss.inference.segment.Segmenter``, the code behind ``medwss segment``: the server returns voxel for voxel the
mask that command writes. Label names come from the bundle's ``metadata.json`` ``channel_def``.

Start (docs/monai-label.md): ``monailabel start_server --app apps/monailabel --studies DIR --host 127.0.0.1
--port 8000``; ``--conf bundles DIR`` serves the bundles in another folder. Nothing is downloaded: the weights are
the bundles' own ``models/*.pt``.

Organ prior: a bundle whose ``inference.yaml`` says ``region: prior`` (liver tumour: the liver mask) takes it from
the ``label`` file uploaded with the request, else from the studies folder's ``labels/prior/<image id>.nii.gz``;
without one the request is refused (400) rather than segmenting a tumour model outside its organ. For any other
bundle a prior found the same way bounds the mask, as ``medwss segment --roi-mask`` does.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

import medwss
from medwss.errors import MedwssError
from medwss.inference.inferer import METHODS
from medwss.inference.label_safety import NOT_AVAILABLE, confined, host_problem

logger = logging.getLogger(__name__)

# metadata.json data_type of bundles that segment volumes; photo bundles (bundles/coco, voc: jpeg) are not served,
# MONAI Label's radiology clients (3D Slicer, OHIF) open scans
VOLUME_DATA_TYPES = ("nifti", "dicom", "nrrd", "metaimage")
PRIOR_TAG = "prior"  # label tag (folder studies/labels/prior/) that holds each study's organ prior
DEFAULT_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"  # the repository's bundles/


def bundle_labels(metadata: dict[str, Any]) -> dict[str, int]:
    """Label name -> mask value from the first output's ``channel_def``, background left out (as MONAI Label's
    ``BundleInferTask`` reads it, so clients see the same names either way)."""
    pred = next(iter(metadata["network_data_format"]["outputs"].values()))
    return {
        str(name).lower(): int(value)
        for value, name in pred.get("channel_def", {}).items()
        if str(name).lower() != "background"
    }


def find_bundles(root: Path) -> list[Path]:
    """Every bundle folder directly under ``root`` (one with ``configs/inference.yaml`` and ``metadata.json``)."""
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if (p / "configs" / "inference.yaml").is_file() and (p / "configs" / "metadata.json").is_file()
    )


def not_available(what: str, value: Any) -> HTTPException:
    """One answer (404) for a path outside the studies folder, a missing file and an unreadable one alike."""
    return HTTPException(status_code=404, detail=f"{what} {str(value)[:200]!r}: {NOT_AVAILABLE}")


def bad_request(problem: str) -> HTTPException:
    """A user error as HTTP 400 with its reason (an uncaught exception would reach the client as a bare 500)."""
    return HTTPException(status_code=400, detail=problem)


class MedwssInferTask(InferTask):
    """One medwss bundle as a MONAI Label segmentation model.

    Request keys: ``image`` (scan path, set by the app from the study id), ``method`` (``rlsp``, ``single-agent``
    or ``cam``; default ``rlsp``), ``label`` (organ prior path, optional). The result is a NIfTI mask on the
    scan's grid plus ``{label_names, method, bundle, version, latencies}``.

    Raises:
        MedwssError: the bundle has no inference config or no trained weights (the app then skips it).
    """

    def __init__(self, bundle: Path) -> None:
        metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=bundle_labels(metadata),
            dimension=3,  # a whole volume in, a volume mask out (the game is played per slice inside)
            description=metadata.get("description", metadata.get("name", bundle.name)),
            config={"method": list(METHODS)},  # clients (3D Slicer) show a list as a choice; the first is default
        )
        self.bundle, self.version = bundle, metadata.get("version", "")
        self._segmenters: dict[str, Any] = {}
        # Built now, not at the first request: a bundle without weights is reported at start-up and not served.
        self.needs_prior = self.segmenter(METHODS[0]).region == "prior"

    def segmenter(self, method: str):
        """The bundle's ``Segmenter`` for ``method``, built once (configs parsed, weights loaded)."""
        if method not in self._segmenters:
            from medwss.inference.segment import Segmenter

            self._segmenters[method] = Segmenter(self.bundle, method)
        return self._segmenters[method]

    def is_valid(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version}

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Segment ``request["image"]``; returns the mask file (removed by the server once sent) and its params.

        Raises:
            HTTPException: 400 for an unknown method, a missing organ prior, or a scan or prior medwss rejects.
        """
        method = request.get("method") or METHODS[0]
        if isinstance(method, (list, tuple)):  # the config's list of choices, sent back unchosen
            method = method[0]
        if method not in METHODS:
            raise bad_request(f"unknown method {method!r} (use {', '.join(METHODS)})")
        scan = Path(str(request["image"]))
        prior = Path(str(request["label"])) if request.get("label") else None
        if self.needs_prior and prior is None:
            raise bad_request(
                f"model {self.bundle.name} needs an organ prior: upload it as 'label' with the request, or save it "
                f"in the studies folder as labels/{PRIOR_TAG}/<image id>.nii.gz"
            )
        with tempfile.NamedTemporaryFile(prefix="medwss-", suffix=".nii.gz", delete=False) as f:
            out = Path(f.name)
        start = time.perf_counter()
        try:
            self.segmenter(method).segment(scan, out, prior)
        except MedwssError as err:
            out.unlink(missing_ok=True)
            raise bad_request(str(err)) from err
        seconds = time.perf_counter() - start
        logger.info("%s (%s): %s segmented in %.1f s", self.bundle.name, method, scan.name, seconds)
        params = {
            "label_names": self.labels,
            "method": method,
            "bundle": self.bundle.name,
            "version": self.version,
            "latencies": {"total": round(seconds, 2)},
        }
        return str(out), params


class MedwssApp(MONAILabelApp):
    """Serves every medwss bundle as an inference model; no training, no model zoo (train with ``medwss train``).

    Conf (``--conf KEY VALUE``): ``bundles`` the folder of bundles (default: the repository's ``bundles/``).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        import sys

        problem = host_problem(sys.argv, conf)
        if problem:  # raised before any model is served: an open port without authentication reads the studies
            logger.error(problem)
            raise RuntimeError(problem)
        self.bundles_dir = Path(conf.get("bundles", DEFAULT_BUNDLES)).resolve()
        self.studies_dir = Path(studies).resolve()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medwss",
            description="Weakly-supervised segmentation by self-play (RLSP): medwss bundles",
            version=medwss.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for bundle in find_bundles(self.bundles_dir):
            data_type = str(json.loads((bundle / "configs" / "metadata.json").read_text()).get("data_type", ""))
            if data_type.lower() not in VOLUME_DATA_TYPES:
                logger.info("not serving %s: it segments %s images, not volumes", bundle, data_type or "unknown")
                continue
            try:
                infers[bundle.name] = MedwssInferTask(bundle)
            except MedwssError as err:
                logger.warning("not serving %s: %s", bundle, err)
        if not infers:
            logger.warning("no servable medwss bundle under %s", self.bundles_dir)
        logger.info("medwss models: %s", ", ".join(infers) or "none")
        return infers

    def init_trainers(self) -> dict:
        return {}

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """Confine ``image`` and ``label`` to the studies folder (and MONAI Label's uploads); add the study's organ
        prior (``labels/prior/<image id>``) unless the client uploaded one.

        Raises:
            HTTPException: 404, one answer for a path outside the studies, a missing and an unreadable file.
        """
        request = self.confine(request, datastore or self.datastore())
        task = self._infers.get(request.get("model", ""))
        if isinstance(task, MedwssInferTask) and not request.get("label") and isinstance(request.get("image"), str):
            prior = self.prior_of(request["image"], datastore or self.datastore(), refresh=task.needs_prior)
            if prior:
                request = {**request, "label": prior}
        return super().infer(request, datastore)

    def confine(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Check the request's ``image`` (a study id or path) and ``label`` (a path) against the studies folder."""
        image = request.get("image")
        if isinstance(image, str):
            if "/" in image or "\\" in image or Path(image).exists():
                if confined(image, self.studies_dir) is None:
                    raise not_available("image", image)
            else:
                uri = datastore.get_image_uri(image) if image else ""
                if not uri or confined(str(uri), self.studies_dir) is None:
                    raise not_available("image", image)
        label = request.get("label")
        if isinstance(label, str) and label and confined(label, self.studies_dir) is None:
            raise not_available("label", label)
        return request

    @staticmethod
    def prior_of(image_id: str, datastore: Datastore, refresh: bool = False) -> str | None:
        """The path of the study's label tagged ``prior``, or None (also for an image given as a path).

        The local datastore watches only the label folders that existed at start-up: with ``refresh`` (a model that
        needs a prior) a prior saved since is found after one rescan of the folder.
        """
        label_id = datastore.get_label_by_image_id(image_id, PRIOR_TAG)
        if not label_id and refresh:
            datastore.refresh()
            label_id = datastore.get_label_by_image_id(image_id, PRIOR_TAG)
        return datastore.get_label_uri(label_id, PRIOR_TAG) if label_id else None
