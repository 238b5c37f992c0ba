"""``python -m streams.api [--host H] [--port P] [--workers N]``: serve the API.

See :mod:`streams.api.server`.
"""

from streams.api.server import main

raise SystemExit(main())
