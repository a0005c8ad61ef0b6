# Stage `evaluate`: decisions, scores against the references, fidelity to the teacher
# (proxyseg.evaluate).


rule decide:
    """Threshold a system's probabilities into RTTM decisions."""
    input:
        inference("{system}", "{corpus}", "{split}"),
    output:
        f"{R}/inference/{{system}}/{{corpus}}/{{split}}.rttm",
    params:
        threshold=SCORING["threshold"],
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/decide/{{system}}/{{corpus}}/{{split}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg decide --probs {input} --out {output} --threshold {params.threshold} > {log} 2>&1"


rule score:
    """Detection precision, recall and F1 of one system on one corpus (annotated classes, inside the UEM)."""
    input:
        hypothesis=f"{R}/inference/{{system}}/{{corpus}}/{SCORING['split']}.rttm",
        reference=labels("{corpus}", SCORING["split"], "reference.rttm"),
        uem=labels("{corpus}", SCORING["split"], "uem.uem"),
        annotated=labels("{corpus}", SCORING["split"], "annotated.json"),
        manifest=labels("{corpus}", SCORING["split"], "manifest.tsv"),
    output:
        f"{R}/scores/{{system}}/{{corpus}}.tsv",
    params:
        collar=SCORING["collar"],
        classes=f"--classes {' '.join(TEACHER['classes'])}" if BLACKBOX else "",  # what a black box knows
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=60,
        gpu=0,
    log:
        f"{R}/logs/score/{{system}}/{{corpus}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg score --system {wildcards.system} --corpus {wildcards.corpus} --reference {input.reference} "
        "--uem {input.uem} --annotated {input.annotated} --hypothesis {input.hypothesis} "
        "--collar {params.collar} --manifest {input.manifest} {params.classes} --out {output} > {log} 2>&1"


rule segmentation_table:
    """Teacher and proxies on every corpus: long TSV, paper-shaped Markdown table, settings."""
    input:
        scores=[f"{R}/scores/{s}/{c}.tsv" for s in SYSTEMS for c in SCORED],
        floors=[labels(c, SCORING["split"], f) for c in SCORED for f in ("reference.rttm", "uem.uem", "annotated.json")],
        energy=[
            p
            for c in energy_floor_corpora()
            for p in (spectrograms(c, "dev"), labels(c, "dev", "targets.h5"), spectrograms(c, SCORING["split"]))
        ],
    output:
        tsv=report(f"{R}/tables/segmentation.tsv", caption="../report/segmentation.rst", category="Tables"),
        md=f"{R}/tables/segmentation.md",
        settings=f"{R}/tables/segmentation_settings.json",
    params:
        settings=as_json({**SCORING, "uem": "scored regions of each corpus (labels/<corpus>/<split>/uem.uem)"}),
        floors=" ".join(f"--floor {c}={os.path.dirname(labels(c, SCORING['split'], 'uem.uem'))}" for c in SCORED),
        classes=f"--classes {' '.join(TEACHER['classes'])}" if BLACKBOX else "",
        energy=energy_floor_options(),
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/segmentation_table.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg segmentation-table {input.scores} {params.floors} {params.energy} {params.classes} --out-tsv {output.tsv} "
        "--out-md {output.md} --out-settings {output.settings} --settings {params.settings:q} > {log} 2>&1"


rule fidelity:
    """Agreement of one proxy's decisions with the teacher's on the scored split and scoring.agreement_splits
    (and, for a proxy that calibrates, without its calibration), plus reconstruction error and sparsity of H."""
    input:
        teacher=[inference("teacher", c, s) for c, s in AGREEMENT],
        proxy=[inference("{proxy}", c, s) for c, s in AGREEMENT],
        uncalibrated=lambda w: [uncalibrated(w.proxy, c, s) for c, s in AGREEMENT] if calibrated(w.proxy) else [],
    output:
        f"{R}/scores/fidelity/{{proxy}}.tsv",
    params:
        sets=" ".join(shlex.quote(agreement_name(c, s)) for c, s in AGREEMENT),
        threshold=SCORING["threshold"],
        uncalibrated=lambda w, input: f"--uncalibrated {' '.join(input.uncalibrated)}" if input.uncalibrated else "",
    threads: 1
    resources:
        mem_mb=retry_mem(8000),
        runtime=60,
        gpu=0,
    log:
        f"{R}/logs/fidelity/{{proxy}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg fidelity --system {wildcards.proxy} --teacher {input.teacher} --proxy {input.proxy} "
        "--corpora {params.sets} --threshold {params.threshold} {params.uncalibrated} --out {output} > {log} 2>&1"


rule fidelity_table:
    """Fidelity of every proxy in one table."""
    input:
        [f"{R}/scores/fidelity/{p}.tsv" for p in PROXIES],
    output:
        tsv=report(f"{R}/tables/fidelity.tsv", caption="../report/fidelity.rst", category="Tables"),
        md=f"{R}/tables/fidelity.md",
        wide=f"{R}/tables/fidelity_wide.tsv",  # the CLI writes it beside the .md (its name: the .md's + _wide)
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/fidelity_table.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg fidelity-table {input} --out-tsv {output.tsv} --out-md {output.md} > {log} 2>&1"
