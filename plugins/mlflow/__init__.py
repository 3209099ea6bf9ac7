"""The ``mlflow`` logger: params, metrics and artifacts of a run in an MLflow tracking store
(``pip install 'segkit[mlflow]'``).

Light on purpose: MLflow is imported only when the logger is built, never by ``segkit list``.
"""

import segkit


@segkit.hookimpl
def segkit_register_loggers(register):
    register("mlflow", "segkit_plugins.mlflow.logger:MlflowLogger")
