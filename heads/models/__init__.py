"""Every torch head: importing this package registers them (a new head is a file plus a line here)."""

from heads.models import bilstm, bilstm_crf, cross_attention, cwi, linear, msb, partial  # noqa: F401
