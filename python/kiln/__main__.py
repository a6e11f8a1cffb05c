"""`python -m kiln ...` runs the kiln CLI installed with the wheel."""

import os
import shutil
import sys


def main() -> None:
    exe = shutil.which("kiln")
    if exe is None:
        sys.exit("kiln: the kiln CLI is not on PATH (it is installed into the environment's scripts folder)")
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    main()
