"""The wiring: builds each stage from the kernel's topology and settings, and exposes them as
the ``newsflow`` command line and the HTTP API. It may import every package; none imports it."""
