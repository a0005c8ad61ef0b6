# proxyseg: explainable proxy models for multilabel audio segmentation (Mariotte et al., ICASSP 2024).
#   snakemake --cores all                       # the demo, offline
#   snakemake --cores all --configfile my.yaml  # your corpora
# Every computation lives in the `proxyseg` package; rules only call its command line.

from snakemake.utils import min_version

min_version("8.0")


# The demo configuration, unless --configfile names your own: then yours replaces it whole (your corpora
# and proxies are not merged with the demo's); keys you leave out take the schema's defaults.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpora.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/dictionary.smk"
include: "workflow/rules/proxy.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/segmenter.smk"


# Rules that take seconds run where Snakemake runs, never as cluster jobs (a queued job would wait longer
# than it works); fetch_debian too, as compute nodes often cannot reach the package mirror.
localrules:
    all,
    class_hours,
    fetch_debian,
    gather_features,
    decide,
    score,
    segmentation_table,
    fidelity,
    fidelity_table,
    faithfulness_table,
    groundtruth_table,
    saliency_table,


rule all:
    input:
        all_outputs(),
        trust_outputs(),
    default_target: True
