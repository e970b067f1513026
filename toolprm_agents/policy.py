"""Re-export of :mod:`toolprm_agents.backends.transformers_policy` under its old name.

The transformers policy lives with the other backends now. ``toolprm_agents.policy`` *is*
that module (the same object in ``sys.modules``), so every existing import, private names
included, keeps working and a test that patches ``toolprm_agents.policy.X`` patches the
one the library uses.

Example:
    >>> from toolprm_agents.policy import TransformersPolicy   # same as backends.transformers_policy
"""

import sys

from .backends import transformers_policy as _module

sys.modules[__name__] = _module
