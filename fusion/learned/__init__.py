"""The machinery every learned fuser shares, kept out of the architectures (timm's shape).

An architecture package (``fusion/s4fusion/``, ``fusion/smfnet/``) holds only its network, its config
and loss dataclasses, its valid-size rule and converters of its authors' checkpoints; it describes
itself with one :class:`~fusion.learned.architecture.Architecture` and names its benchmark methods
with :class:`~fusion.learned.architecture.LearnedMethod` entries. Everything else is here:

- :mod:`.architecture`: the architecture and method registries, option validation;
- :mod:`.checkpoint`: ``{format, arch, config, state_dict, ...}`` files and :func:`load_model`;
- :mod:`.data`: paired random crops of the training split and extra folders;
- :mod:`.trainer`: the loop (stages, schedules, AMP, DDP, exact resume, CSV logs, recorders);
- :mod:`.inference`: :class:`LearnedFuser`, padding to a valid size, colour, batching, AMP.
"""
