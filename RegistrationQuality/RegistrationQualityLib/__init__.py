"""RegistrationQualityLib: Qt-free registration quality assurance on Slicer's MRML (app or slicer-core).

Modules, one concern each: ``context`` (scene + logics), ``errors``, ``io`` (files <-> nodes/images),
``elastix`` (elastix/ITK transforms), ``segmentation`` (thresholds), ``metrics`` (segment comparison),
``landmarks`` (TRE), ``deformation`` (Jacobian, similarity), ``rendering`` (snapshots), ``report``,
``evaluate`` (the one-call facade), ``cohort``, ``cli``.
"""

import os

__version__ = "0.1.0"

# The compiled kernels (numba, OpenMP threading layer) run as thousands of short parallel regions with Python,
# SimpleITK and VTK work in between. GNU OpenMP's default keeps its worker threads spinning for a while after each
# region, which on a 2-core machine takes a core away from that work (and from ITK's own threads): on the CT
# benchmark case the process used 10-24 % more CPU and ITK's resampling ran 15 % slower. Idle workers sleep
# instead; a value set by the user is kept. Read once, when the OpenMP library is loaded (the first kernel).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
