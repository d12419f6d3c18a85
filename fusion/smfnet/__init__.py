"""SMFNet (the paper in ``../shared/papers/002_*``; every size in ``../shared/SMFNET.md``): a shared
encoder (transformer stem, cross-attention detail branch, residual-transformer base branch), graph
reasoning across modalities, two fusion layers and a shared decoder, trained in two stages.

Read top-down: config (every size) -> blocks (the layers every module reuses) -> encoder, graph,
fusion_layers, decoder -> model (the five modules and both forward passes) -> losses (both presets)
-> stages (what trains when) -> checkpoint (the authors' five-dict layout) -> architecture (the
registry entry: the learned-fuser framework trains, saves, loads and runs it; colour and the
release's min-max output are the framework's inference options).
"""
