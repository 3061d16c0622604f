"""RegistrationQualityLib: Qt-free registration quality assurance on Slicer's MRML (app or slicer-core).

Modules, one concern each: ``context`` (scene + logics), ``errors``, ``io`` (files <-> nodes/images),
``elastix`` (elastix/ITK transforms), ``segmentation`` (thresholds), ``metrics`` (segment comparison),
``landmarks`` (TRE), ``deformation`` (Jacobian, similarity), ``rendering`` (snapshots), ``report``,
``evaluate`` (the one-call facade), ``cohort``, ``cli``.
"""

__version__ = "0.1.0"
