"""The ``wandb`` logger: a Weights & Biases run, offline by default
(``pip install 'segkit[wandb]'``).

Light on purpose: wandb is imported only when the logger is built, never by ``segkit list``.
"""

import segkit


@segkit.hookimpl
def segkit_register_loggers(register):
    register("wandb", "segkit_plugins.wandb.logger:WandbLogger")
