"""The HDF5 feature cache: the contract between ``featurize``, ``heads`` and ``bench``."""
