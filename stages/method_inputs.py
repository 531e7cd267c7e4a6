"""DVC stage ``method_inputs``: ``python -m stages.method_inputs`` writes, per target method, what its adapt@ runs
read upstream (its own params, hashes of distill's P or of the source prompts). The work:
pipeline/flows/method_inputs.py.
"""

from pipeline.flows import method_inputs
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("method_inputs", method_inputs.run)

if __name__ == "__main__":
    run_stage("method_inputs", main)
