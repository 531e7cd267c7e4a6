"""DVC stage ``adapt@<target>-<method>-<seed>``: ``python -m stages.adapt <target> <method> <seed>`` adapts one
target with one method under one seed, once per k of the target's k_shot. The work: pipeline/flows/adapt.py.
"""

from pipeline.flows import adapt
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("adapt", adapt.run, "target task", "method", "seed")

if __name__ == "__main__":
    run_stage("adapt", main)
