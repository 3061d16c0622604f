"""Evaluate one registration in Slicer batch mode, with the same options as ``registration-quality evaluate``.

    Slicer --no-main-window --python-script <module dir>/Resources/Scripts/batch_evaluate.py -- \\
        --fixed fixed.nrrd --moving moving.nrrd --elastix-dir elastix-out \\
        --fixed-landmarks fixed.mrk.json --moving-landmarks moving.mrk.json --max-tre 2 --output qa-report

The evaluation runs on Slicer's own scene and module logics (``RegistrationQualityLib.commands.batch_main``);
the exit status is the CLI's: 0 every requested check passed, 1 a check failed, 2 bad input (one stderr line).
"""

import os
import sys


def main():
    import slicer

    here = os.path.dirname(os.path.abspath(__file__))
    module_dir = os.path.dirname(os.path.dirname(here))  # <module dir>/Resources/Scripts -> <module dir>
    if module_dir not in sys.path:
        sys.path.insert(0, module_dir)
    from RegistrationQualityLib.commands import batch_main

    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    code = batch_main(args, slicer)
    sys.stdout.flush()
    sys.stderr.flush()
    if hasattr(slicer, "util") and hasattr(slicer.util, "exit"):
        slicer.util.exit(code)  # quits the Slicer application with this status
    sys.exit(code)


if __name__ == "__main__":
    main()
