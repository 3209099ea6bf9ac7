"""The verbs of the ``segkit`` command, one module per topic; each has ``add_commands``."""
