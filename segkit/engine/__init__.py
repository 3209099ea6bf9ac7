"""The training engine: the training loop, evaluation, inference, checkpoints, precision.

Modules: ``trainer`` (the loop), ``evaluator`` and ``inference`` (validation and prediction,
shared by training and ``segkit eval``/``predict``), ``losses`` (the weighted objective),
``checkpoint``, ``precision`` (device and autocast), ``sampler`` (the resumable data stream),
``run`` (what event hooks receive), ``rundir`` (the files of a run), ``progress`` and
``visualize`` (what a person looks at), ``distributed`` (torchrun's processes and the few
collectives the engine needs) and ``sync_bn`` (batch norm over the global batch).
"""
