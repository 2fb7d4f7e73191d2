"""``python -m stream`` is the ``driftstream`` command."""

from stream.cli import main

raise SystemExit(main())
