"""S4Fusion (Li et al., "S4Fusion: Saliency-aware Selective State Space Model for Infrared and Visible
Image Fusion") and its Table V ablations.

Read top-down: config (sizes, topologies) -> geometry (valid sizes) -> ssm (scan orders,
per-direction parameters) -> ss2d (VSS block) -> cmsa (cross-modal block) and ablations -> layers /
stages (embedding, merging, expanding, fold head) -> model -> losses (the training objective) ->
interpret (Delta recording) -> checkpoint (converters of the authors' model.pkl and the first project
format) -> architecture (the registry entry: the architecture and its methods, Table V as data).
Training, inference and the checkpoint format are the generic ones of :mod:`fusion.learned`.
"""
