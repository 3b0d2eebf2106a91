"""Settings and registrations the data tests share.

ITK reads its thread count (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``) once, at its first
use in a process, and brainlrp chooses one thread when it first reaches for ANTsPy
(:mod:`brainlrp.data.register`). These tests call ANTsPy themselves before registering
(``ants.image_read``), as a user's script may: like such a script, they choose ITK's
threads before that first use, or registrations in the same process would run on every
core and give other transforms.

The ``twin`` and ``rescan`` references are registered by :mod:`brainlrp.simulate`
(``data`` never imports it; docs/architecture.md, "Reference kinds"). brainlrp's commands
load them through :class:`brainlrp.explain.call.MethodCalls`; these tests build
references with :class:`brainlrp.data.reference.References` directly, so they load them
here, whichever test runs first or alone.
"""

import os

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import brainlrp.simulate.references  # noqa: E402, F401
