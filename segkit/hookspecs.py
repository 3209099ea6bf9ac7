"""The whole plugin API of segkit.

A plugin is a module (or any object) with functions named after these hooks and decorated with
``@segkit.hookimpl``. It is found through an entry point in the group ``segkit``::

    [project.entry-points.segkit]
    my_plugin = "my_package.segkit_plugin"

Registration hooks are called once per process, when the registry is first needed. Each receives
``register(name, factory, *, aliases=(), help=None)``: ``name`` is lower case
(``[a-z0-9][a-z0-9_.-]*``); ``factory`` is a callable, or a ``"module:attribute"`` string that is
imported only when the component is built or shown, so that ``segkit list`` stays fast. The
factory's signature is the component's config schema: its parameters, defaults and type hints are
what a config may set, and its docstring's first line is the help text.

Run-event hooks are called by the trainer in the rank-0 process only; ``run`` is the
:class:`segkit.engine.run.Run` of the current training (config, work_dir, model, dataset classes,
max_iters, ...). They must not change the training; they observe it.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("segkit")
hookimpl = pluggy.HookimplMarker("segkit")


@hookspec
def segkit_register_backbones(register):
    """Register backbones: ``factory(**options)`` returns a module whose ``forward(x)`` gives the
    list of stage features and whose ``out_channels`` and ``strides`` describe them."""


@hookspec
def segkit_register_heads(register):
    """Register decode heads: ``factory(in_channels, num_classes, **options)`` returns a module
    mapping the selected backbone features to class logits. The core supplies ``in_channels``
    (an int, or a list when the head reads several stages) and ``num_classes``."""


@hookspec
def segkit_register_datasets(register):
    """Register datasets: ``factory(**options)`` returns a map-style dataset whose items are
    dicts with ``image`` (CxHxW, uint8 or uint16: the model's channels and ``data.image_dtype``), ``mask`` (int64, HxW, 255 = ignore) and ``name``, and
    which has ``classes`` (names) and ``palette`` (RGB triples). A factory with a ``root``
    argument receives ``data.root`` when the config sets none. For ``data.on_bad_sample`` to
    apply, raise :class:`segkit.errors.SampleError` for a sample that cannot be served and list
    files left out while indexing in a ``problems`` attribute (see docs/datasets.md). A factory
    may declare, without data, its fixed ``classes`` and ``palette`` and, for a dataset made by
    merging another's classes, that merge as ``label_map`` (a :class:`segkit.label_map.LabelMap`),
    which ``--merge NAME`` uses."""


@hookspec
def segkit_register_losses(register):
    """Register losses: ``factory(ignore_index, **options)`` returns a callable
    ``loss(logits, target) -> scalar``. The core supplies ``ignore_index``."""


@hookspec
def segkit_register_lr_schedulers(register):
    """Register LR schedulers, stepped once per iteration: ``factory(optimizer, max_iters,
    **options)`` returns a ``torch.optim.lr_scheduler.LRScheduler``. The core supplies
    ``optimizer`` and ``max_iters``."""


@hookspec
def segkit_register_optimizers(register):
    """Register optimizers: ``factory(params, **options)`` returns a ``torch.optim.Optimizer``.
    The core supplies ``params``, a list of parameter groups (dicts with ``params``, ``name``
    and ``lr_mult``)."""


@hookspec
def segkit_register_transforms(register):
    """Register data transforms: ``factory(**options)`` returns a callable that takes a sample
    dict (``image``, ``mask``, ...) and a ``numpy.random.Generator`` and returns the transformed
    sample. Image and mask are transformed together; masks are filled with the ignore value."""


@hookspec
def segkit_register_loggers(register):
    """Register loggers: ``factory(**options)`` returns an object implementing any of the
    run-event hooks below; the trainer registers the loggers a config lists for one run. A logger
    that writes files says so for the run's summary: ``outputs``, a list of ``(path,
    description)`` pairs, and ``watch``, a one-line command to follow the run (both optional)."""


@hookspec
def segkit_register_commands(subparsers):
    """Add CLI verbs: ``subparsers`` is the ``argparse`` sub-parser collection of ``segkit``.
    A verb sets ``handler=callable(args) -> int`` with ``set_defaults``; the callable returns the
    exit status and may raise :class:`segkit.SegkitError` for errors the user can fix. A plugin
    whose implementation raises (or claims a verb already taken) is unregistered and recorded."""


@hookspec
def segkit_on_train_start(run):
    """Called once before the first training iteration (also when resuming)."""


@hookspec
def segkit_on_train_iter_end(run, step, logs):
    """Called after every optimizer step; ``step`` counts from 1. On logging steps (every
    ``train.log_interval`` and the last) ``logs`` maps names (``loss``, each loss term such as
    ``loss_main`` and ``loss_aux0``, ``lr``, ``imgs_per_s``, ``peak_mem_gb``) to floats averaged
    since the previous logging step; on other steps it is empty, so that the loop never waits
    for the device just to report."""


@hookspec
def segkit_on_eval_end(run, step, metrics):
    """Called after each validation; ``metrics`` holds ``mIoU``, ``mAcc``, ``aAcc`` (fractions),
    ``IoU`` and ``Acc`` (class name -> fraction, ``None`` for a class absent from labels and
    predictions), plus ``samples``: a few dicts with ``name``, ``image`` (CxHxW uint8 or uint16; ``segkit.engine.visualize.panel`` draws any), ``label``
    and ``prediction`` (HxW) for pictures; ``run.palette`` colours them."""


@hookspec
def segkit_on_checkpoint(run, path):
    """Called after a checkpoint has been written completely to ``path``."""


@hookspec
def segkit_on_train_end(run):
    """Called once when training stops, whether it finished, was interrupted or failed."""
