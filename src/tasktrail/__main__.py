"""``python -m tasktrail``: the same as the ``tasktrail`` command."""

from tasktrail.cli import main

main()
