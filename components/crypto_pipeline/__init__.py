"""Kubeflow for Poets: an end-to-end pipeline that predicts Bitcoin's daily close.

One implementation serves the notebooks, the ``crypto-pipeline`` command line, the
Kubeflow Pipelines components and the container images. Modules are named by stage:
``schema``, ``sample_data``, ``ingest``, ``transform``; ``config`` holds the typed
settings and ``cli`` the command line.
"""

__version__ = "0.1.0"
