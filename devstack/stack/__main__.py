"""``python -m devstack.stack up|down|status|install`` (same as ``newsflow stack ...``)."""

from devstack.stack.cli import stack_app

stack_app(prog_name="newsflow stack")
