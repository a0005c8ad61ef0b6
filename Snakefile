# proxyseg: explainable proxy models for multilabel audio segmentation (Mariotte et al., ICASSP 2024).
#   snakemake --cores all                       # the demo, offline
#   snakemake --cores all --configfile my.yaml  # your corpora
# Every computation lives in the `proxyseg` package; rules only call its command line.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/proxy.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
