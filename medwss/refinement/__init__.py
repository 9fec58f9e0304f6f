"""Refinement: a segmentation network trained on the agent's masks (beyond the paper)."""
