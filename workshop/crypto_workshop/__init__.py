"""The notebooks' helpers: diagrams, the coin-flip pipeline, the exercises and their checks.

They live apart from ``crypto_pipeline`` so that a step image carries only what the steps
need; the learner's environment and the workshop image install both packages.
"""
