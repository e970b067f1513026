"""``python -m toolprm_agents ...`` is the ``toolprm-agents`` command."""

import sys

from .cli import main

sys.exit(main())
