"""Kubeflow for Poets: an end-to-end pipeline that predicts Bitcoin's daily close.

One implementation serves the notebooks, the ``crypto-pipeline`` command line, the
Kubeflow Pipelines components and the container images. Modules are named by stage:
``schema``, ``sample_data``, ``ingest``, ``transform``; ``config`` holds the typed
settings and ``cli`` the command line.
"""

import logging

__version__ = "0.1.0"
"""The project's version, its one home: pyproject.toml, the Makefile and the scripts read it."""


class _WithoutBeamGcpExtra(logging.Filter):
    """Drops the warning Beam logs at import when its Google Cloud extra is not installed.

    The learner's set (``make setup``) leaves that extra out: the DirectRunner needs none
    of it, and Beam would otherwise print "apitools not found, and bigquery client libraries
    are not available" into every notebook that imports it. Dataflow runs from the
    transform image and the ``dev`` set, which have the extra. Only that message is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and record.getMessage().startswith("apitools not found"))


logging.getLogger().addFilter(_WithoutBeamGcpExtra())
