"""Re-export of :mod:`toolprm_agents.backends.transformers_judges` under its old name.

The transformers judges (ToolPRM, outcome RM, coarse PRM) and the likelihood scorer live
with the other backends now. ``toolprm_agents.scorers`` *is* that module (the same object
in ``sys.modules``), so every existing import keeps working, private names and
``toolprm_agents.scorers.load_scorer(...)`` in checkpoint READMEs included.

Example:
    >>> from toolprm_agents.scorers import load_scorer   # same as backends.transformers_judges
"""

import sys

from .backends import transformers_judges as _module

sys.modules[__name__] = _module
