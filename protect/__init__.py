"""protect: defend your data before it is taken.

The shared plumbing lives here (errors, image I/O, devices, reports, the CLI root); each capability is its own
top-level package: `unlearnable`, `watermark`, `forgettable`, `memory_store`.
"""

__version__ = "0.1.0"
