rule infer_teacher:
    """The teacher's frame probabilities, in the layout every system shares."""
    input:
        dump=f"{R}/teacher/dump/{{corpus}}/{{split}}.h5",
    output:
        inference("teacher", "{corpus}", "{split}"),
    threads: 1
    resources:
        mem_mb=retry_mem(8000),
        runtime=60,
        gpu=0,
    log:
        f"{R}/logs/infer/teacher/{{corpus}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/infer/teacher/{{corpus}}/{{split}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg infer --dump {input.dump} --out {output} > {log} 2>&1"


rule infer_proxy:
    """Sliding-window proxy inference: probabilities and NMF activations H per file."""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        dump=f"{R}/teacher/dump/{{corpus}}/{{split}}.h5",
        spectrograms=spectrograms("{corpus}", "{split}"),
    output:
        inference("{proxy}", "{corpus}", "{split}"),
    params:
        settings=as_json({"step": config["teacher"]["dump_step"], "aggregate": AGGREGATE}),
    threads: 1
    resources:
        mem_mb=retry_mem(16000),
        runtime=240,
        gpu=1,
    log:
        f"{R}/logs/infer/{{proxy}}/{{corpus}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/infer/{{proxy}}/{{corpus}}/{{split}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} infer --checkpoint {input.model} --dump {input.dump} "
        "--spectrograms {input.spectrograms} --out {output} --settings {params.settings:q} > {log} 2>&1"


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
        "--collar {params.collar} --manifest {input.manifest} --out {output} > {log} 2>&1"


rule segmentation_table:
    """Teacher and proxies on every corpus: long TSV, paper-shaped Markdown table, settings."""
    input:
        [f"{R}/scores/{s}/{c}.tsv" for s in SYSTEMS for c in CORPORA],
    output:
        tsv=report(f"{R}/tables/segmentation.tsv", caption="../report/segmentation.rst", category="Tables"),
        md=f"{R}/tables/segmentation.md",
        settings=f"{R}/tables/segmentation_settings.json",
    params:
        settings=as_json({**SCORING, "uem": "scored regions of each corpus (labels/<corpus>/<split>/uem.uem)"}),
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/segmentation_table.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg segmentation-table {input} --out-tsv {output.tsv} --out-md {output.md} "
        "--out-settings {output.settings} --settings {params.settings:q} > {log} 2>&1"


rule fidelity:
    """Agreement of one proxy's decisions with the teacher's, plus reconstruction error and sparsity of H."""
    input:
        teacher=[inference("teacher", c, SCORING["split"]) for c in CORPORA],
        proxy=[inference("{proxy}", c, SCORING["split"]) for c in CORPORA],
    output:
        f"{R}/scores/fidelity/{{proxy}}.tsv",
    params:
        corpora=list(CORPORA),
        threshold=SCORING["threshold"],
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
        "--corpora {params.corpora} --threshold {params.threshold} --out {output} > {log} 2>&1"


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


rule explain:
    """Local explanations of scored-split segments and global class prototypes of one proxy."""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        prototype_triples=lambda wildcards: explain_items(wildcards.proxy, config["explain"]["splits"]),
        local_triples=lambda wildcards: explain_items(wildcards.proxy, [SCORING["split"]]),
        # the audio of the local explanations: from the manifest.tsv beside each local targets.h5
        manifests=[labels(c, SCORING["split"], "manifest.tsv") for c in CORPORA if SCORING["split"] in splits(c)],
        recordings=scored_audio(),
    output:
        prototypes=f"{R}/explanations/{{proxy}}/prototypes.npz",
        figure=report(
            f"{R}/explanations/{{proxy}}/prototypes.png",
            caption="../report/prototypes.rst",
            category="Explanations",
            labels={"figure": "class prototypes", "proxy": "{proxy}"},
        ),
        bands=f"{R}/explanations/{{proxy}}/band_mass.tsv",
        summary=f"{R}/explanations/{{proxy}}/explain.json",
        local=directory(f"{R}/explanations/{{proxy}}/local"),  # <class>_<n>.png, .wav, _residual.wav
    params:
        settings=as_json({k: v for k, v in config["explain"].items() if k != "splits"}),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.prototypes),
    threads: 1
    resources:
        mem_mb=retry_mem(16000),
        runtime=120,
        gpu=0,
    log:
        f"{R}/logs/explain/{{proxy}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:  # local/ is made first: it exists even when no segment is explained (local_per_class: 0)
        "mkdir -p {output.local} && "
        "proxyseg --threads {threads} explain --checkpoint {input.model} --items {input.prototype_triples} --local-items {input.local_triples} "
        "--out-dir {params.out_dir} --seed {params.seed} --settings {params.settings:q} > {log} 2>&1"
