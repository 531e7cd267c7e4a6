"""DVC stage ``backbone``: ``python -m stages.backbone`` materialises the frozen LM under models/backbone.

The work: pipeline/flows/backbone.py.
"""

from pipeline.flows import backbone
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("backbone", backbone.run)

if __name__ == "__main__":
    run_stage("backbone", main)
