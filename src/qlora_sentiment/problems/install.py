# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`make install` refusals."""

from __future__ import annotations

from . import index, rows_of, trigger

ROWS = rows_of(
    "install",
    ("lock-mismatch",
     'cpu.lock was resolved for Python',
     '`make` installs exactly `requirements/cpu.lock`, resolved for one Python and platform: use that Python '
     '(`make run PYTHON=python3.11`), or `make lock` with yours and commit the new locks.',
     trigger("install_other_python")),
)
bad_input = index(ROWS)
