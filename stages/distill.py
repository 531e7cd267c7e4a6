"""DVC stage ``distill``: ``python -m stages.distill`` distils the source teachers into one shared prompt P with
per-task factors (MPT). The work: pipeline/flows/distill.py.
"""

from pipeline.flows import distill
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("distill", distill.run)

if __name__ == "__main__":
    run_stage("distill", main)
