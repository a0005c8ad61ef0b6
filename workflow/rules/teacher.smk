rule train_teacher:
    """WavLM layer fusion + TCN trained with masked BCE on all training corpora; early stopping on dev."""
    input:
        train=teacher_pairs("train"),
        dev=teacher_pairs("dev"),
    output:
        model=f"{R}/teacher/model.pt",
        curve=f"{R}/teacher/curve.tsv",
        figure=report(f"{R}/teacher/curve.png", caption="../report/teacher_curve.rst", category="Training"),
        summary=f"{R}/teacher/train.json",
    params:
        settings=as_json(config["teacher"]),
        runtime=runtime_param(),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    threads: 4
    resources:
        mem_mb=retry_mem(32000),
        runtime=1440,
        gpu=1,
    log:
        f"{R}/logs/train_teacher.log",
    benchmark:
        f"{R}/benchmarks/train_teacher.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} train-teacher --train {input.train} --dev {input.dev} "
        "--out-dir {params.out_dir} --seed {params.seed} --settings {params.settings:q} "
        "--runtime {params.runtime:q} > {log} 2>&1"


if BLACKBOX:

    rule fetch_checkpoint:
        """The black box's checkpoint from a file inside a registry wheel (teacher.checkpoint: pypi:...)."""
        output:
            blackbox_checkpoint(),
        params:
            checkpoint=TEACHER["checkpoint"],
        resources:
            **LIGHT,
        log:
            f"{R}/logs/fetch_checkpoint.log",
        conda:
            "../../envs/proxyseg.yaml"
        shell:
            "proxyseg fetch-checkpoint --checkpoint {params.checkpoint:q} --out {output} > {log} 2>&1"

    rule dump_teacher:
        """A pre-trained black box (teacher.kind) on a split: its logits on the 20 ms grid (no features)."""
        input:
            manifest=labels("{corpus}", "{split}", "manifest.tsv"),
            recordings=lambda wildcards: audio_inputs(wildcards.corpus, wildcards.split),
            checkpoint=blackbox_checkpoint(),
        output:
            teacher_dump("{corpus}", "{split}"),
        params:
            kind=TEACHER["kind"],
            checkpoint=checkpoint_option(),
            settings=as_json(INFERENCE),
            runtime=runtime_param(),
        priority: longest_first
        threads: SIDE_THREADS
        resources:
            mem_mb=retry_mem(8000),
            runtime=240,
            gpu=1,
        log:
            f"{R}/logs/dump_teacher/{{corpus}}/{{split}}.log",
        benchmark:
            f"{R}/benchmarks/dump_teacher/{{corpus}}/{{split}}.tsv"
        conda:
            "../../envs/proxyseg.yaml"
        shell:
            "proxyseg --threads {threads} dump-blackbox --kind {params.kind} {params.checkpoint} "
            "--manifest {input.manifest} --out {output} --settings {params.settings:q} "
            "--runtime {params.runtime:q} > {log} 2>&1"

else:

    rule dump_teacher:
        """Sliding-window teacher inference on a split: logits and fused features S per file."""
        input:
            model=f"{R}/teacher/model.pt",
            features=features("{corpus}", "{split}"),
        output:
            f"{R}/teacher/dump/{{corpus}}/{{split}}.h5",
        params:
            settings=as_json(INFERENCE),
            runtime=runtime_param(),
        priority: longest_first
        threads: SIDE_THREADS
        resources:
            mem_mb=retry_mem(16000),
            runtime=240,
            gpu=1,
        log:
            f"{R}/logs/dump_teacher/{{corpus}}/{{split}}.log",
        benchmark:
            f"{R}/benchmarks/dump_teacher/{{corpus}}/{{split}}.tsv"
        conda:
            "../../envs/proxyseg.yaml"
        shell:
            "proxyseg --threads {threads} dump-teacher --checkpoint {input.model} --features {input.features} "
            "--out {output} --settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"


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
