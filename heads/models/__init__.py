"""Every head: importing this package registers them (a new head is a file plus its name here)."""

from heads.models import (  # noqa: F401
    bilstm,
    bilstm_crf,
    crfsuite,
    cross_attention,
    cwi,
    linear,
    msb,
    partial,
)
