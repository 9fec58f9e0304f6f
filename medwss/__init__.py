"""medwss: weakly-supervised medical image segmentation by self-play (RLSP) on MONAI.

Importing the package stays cheap: torch and MONAI are imported by the modules that need them, so that
``medwss --help`` and the CLI's error paths answer fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
