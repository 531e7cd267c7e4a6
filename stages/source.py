"""DVC stage ``source@<task>``: ``python -m stages.source <task>`` trains the teacher prompt of one source task.

The work: pipeline/flows/source.py.
"""

from pipeline.flows import source
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("source", source.run, "source task")

if __name__ == "__main__":
    run_stage("source", main)
