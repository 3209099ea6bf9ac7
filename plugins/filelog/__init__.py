"""Plain-file loggers ``csv`` and ``jsonl``: every logged value as one row, the config beside it.

Light on purpose: the factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_loggers(register):
    register("csv", "segkit_plugins.filelog.logger:CsvLogger")
    register("jsonl", "segkit_plugins.filelog.logger:JsonlLogger")
