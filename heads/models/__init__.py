"""Every torch head: importing this package registers them (a new head is a file plus a line here)."""

from heads.models import bilstm_crf, linear  # noqa: F401
