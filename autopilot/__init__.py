"""The ``autopilot`` command line: the operator's commands, against Azure ML or the local twin alike.

Each command group is a module (``runs``, ``plan``, ``lifecycle``, ``endpoints``) registered by ``main``; ``stack``
(``up``, ``down``, ``host``) and ``demo`` drive the local twin. Nothing in ``shared/``, ``functions/`` or ``local/``
imports this package (pyproject.toml's import rules), and it never ships to the Function App (``.funcignore``)."""
