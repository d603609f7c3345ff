"""The one wrapper of every entry script's main (steps/, utils/, local/, purl CLI):
logging set up, user errors printed as '<script>: <message>' with exit status 1,
Ctrl-C as status 130. An error that is not a PurlError or an OSError (a missing
or unreadable file) is a bug, and its traceback is kept."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn

from purl.errors import PurlError
from purl.logs import setup_logging


def run_main(main: Callable[[], int | None]) -> NoReturn:
    name = Path(sys.argv[0]).name
    setup_logging()
    try:
        status = main()
    except (PurlError, OSError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
