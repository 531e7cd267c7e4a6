"""DVC stage ``data@<task>``: ``python -m stages.prepare <task>`` writes data/prepared/<task>.

The work: pipeline/flows/prepare.py.
"""

import sys

from pipeline.flows import prepare
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("prepare", prepare.run, "task")

if __name__ == "__main__":
    run_stage("data@" + sys.argv[1] if len(sys.argv) > 1 else "data", main)
