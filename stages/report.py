"""DVC stage ``report``: ``python -m stages.report`` compares the target adaptation methods, and the source teachers
with the distilled student, in reports/. The work: pipeline/flows/report.py.
"""

from pipeline.flows import report
from pipeline.flows.stage import run_stage, stage_main

main = stage_main("report", report.run)

if __name__ == "__main__":
    run_stage("report", main)
