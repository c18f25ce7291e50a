"""Benchmarks and the experiment grid."""
