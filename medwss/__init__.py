"""medwss: weakly-supervised medical image segmentation by self-play (RLSP) on MONAI.

Importing the package stays cheap: torch and MONAI are imported by the modules that need them, so that
``medwss --help`` and the CLI's error paths answer fast.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _quiet_optional_codec_note() -> None:
    """MONAI logs "nvImageCodec is not available" at import on every machine without a GPU DICOM codec: a note about
    an optional speed-up medwss never uses, printed before every command's output. Shown again with ``--verbose``."""
    import logging

    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


_quiet_optional_codec_note()
