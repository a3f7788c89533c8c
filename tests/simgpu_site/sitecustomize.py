"""Installs the simulated GPU machine of tests/simgpu.py in a child process when PLINKNET_SIMULATED_GPUS is set.

Only the tests put this folder on PYTHONPATH (tests/simgpu.py: simulated_gpus).
"""

import os
import sys

if os.environ.get("PLINKNET_SIMULATED_GPUS"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import simgpu

    simgpu.install_from_environment()
