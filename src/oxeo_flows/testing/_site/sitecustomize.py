"""Installs the oxeo-flows loopback guard in an emulated process (see oxeo_flows.testing.guard).

Loaded by Python at start-up because the emulators put this directory first on PYTHONPATH. It
loads ``guard.py`` by path, so no package is imported before the program's own code.
"""

import importlib.util as _util
import os as _os
import sys as _sys

if _os.environ.get("OXEO_LOOPBACK_GUARD"):
    _path = _os.path.join(
        _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "guard.py"
    )
    _spec = _util.spec_from_file_location("_oxeo_flows_loopback_guard", _path)
    if _spec is not None and _spec.loader is not None:
        _mod = _util.module_from_spec(_spec)
        _sys.modules[_spec.name] = _mod
        _spec.loader.exec_module(_mod)
        _mod.install()
