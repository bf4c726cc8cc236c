"""The library beneath the step scripts: what two or more steps share.

The steps (``preprocess.py``, ``train.py``, ``generate.py``, ``plot_spectrograms.py``,
``evaluate.py``, ``explore.py``) import from here and never from each other.
Importing the package loads nothing heavy: each module is imported by name.
"""
