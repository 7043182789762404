"""``python -m keyreid_stream`` is the ``keyreid-stream`` command."""

from keyreid_stream.cli import main

raise SystemExit(main())
