"""`python -m recsys` is the `recsys` command.

Under torchrun (``WORLD_SIZE`` > 1) the process ends with ``os._exit`` once the command has
returned and its output is flushed: every file of the run is written and the process group is
destroyed by then, and skipping the interpreter's finalisation avoids an intermittent SIGABRT
("terminate called without an active exception") from Gloo's worker threads being torn down
with the interpreter (pytorch/pytorch#190489, #179291), which would turn a finished run into a
failed one.
"""

import os
import sys

from recsys.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
