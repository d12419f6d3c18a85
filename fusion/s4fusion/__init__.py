"""S4Fusion (Li et al., "S4Fusion: Saliency-aware Selective State Space Model for Infrared and Visible
Image Fusion") and its Table V ablations.

Read top-down: config (sizes, topologies, method names) -> geometry (valid sizes, padding) ->
ssm (scan orders, per-direction parameters) -> ss2d (VSS block) -> cmsa (cross-modal block) and
ablations -> layers / stages (embedding, merging, expanding, fold head) -> model -> checkpoint
(project files and the authors' model.pkl) -> inference (the API other stages call).
Training lives in losses, data and trainer.
"""
