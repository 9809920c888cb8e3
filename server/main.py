"""MCPB bundle entry point: run the omnipost server on stdio."""

import sys
from pathlib import Path

# In a bundle the package sits beside this file (server/omnipost), with vendored deps in server/lib.
_here = Path(__file__).resolve().parent
for path in (_here / "lib", _here):
    if path.is_dir() and str(path) not in sys.path:
        sys.path.insert(0, str(path))

from omnipost.__main__ import main  # noqa: E402 - the path set-up above must run first

if __name__ == "__main__":
    main(sys.argv[1:] or ["serve"])
