# Stage `proxy`: distillation of each proxy from the teacher, and its inference (proxyseg.proxy).


rule train_proxy:
    """Distil the teacher into one named proxy variant (config `proxies`)."""
    input:
        train=proxy_pairs("train"),
        dev=proxy_pairs("dev"),
        dictionary=lambda wildcards: dictionary_path(wildcards.proxy),
        calibrate=lambda wildcards: calibration_pairs(wildcards.proxy),
    output:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        curve=f"{R}/proxies/{{proxy}}/curve.tsv",
        figure=report(
            f"{R}/proxies/{{proxy}}/curve.png",
            caption="../report/proxy_curve.rst",
            category="Training",
            subcategory="{proxy}",
            labels={"figure": "distillation curve", "proxy": "{proxy}"},
        ),
        summary=f"{R}/proxies/{{proxy}}/train.json",
    params:
        settings=lambda wildcards: settings_json(proxy_training(wildcards.proxy)),
        runtime=runtime_param(),
        seed=lambda wildcards: proxy_seed(wildcards.proxy),
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
        calibration=calibration_options,
    priority: CRITICAL_PATH
    threads: 1  # small model: two 1-thread proxies in parallel beat one 2-thread proxy (1.47x per thread pair)
    resources:
        mem_mb=retry_mem(32000),
        runtime=1440,
        gpu=1,
    log:
        f"{R}/logs/train_proxy/{{proxy}}.log",
    benchmark:
        f"{R}/benchmarks/train_proxy/{{proxy}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} train-proxy --train {input.train} --dev {input.dev} "
        "--dictionary {input.dictionary} --out-dir {params.out_dir} --seed {params.seed} "
        "--settings {params.settings:q} --runtime {params.runtime:q} {params.calibration} > {log} 2>&1"


rule infer_proxy:
    """Sliding-window proxy inference: probabilities and NMF activations H per file."""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        dump=f"{R}/teacher/dump/{{corpus}}/{{split}}.h5",
        spectrograms=spectrograms("{corpus}", "{split}"),
    output:
        inference("{proxy}", "{corpus}", "{split}"),
    params:
        settings=as_json(INFERENCE),
        runtime=runtime_param(),
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
        "--spectrograms {input.spectrograms} --out {output} --settings {params.settings:q} "
        "--runtime {params.runtime:q} > {log} 2>&1"


rule infer_proxy_uncalibrated:
    """A calibrated proxy's inference with its bias shifts taken back: does calibration raise its agreement
    with the teacher on held-back audio (tables/fidelity.md, rows '<proxy> uncalibrated')?"""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        record=f"{R}/proxies/{{proxy}}/train.json",
        dump=f"{R}/teacher/dump/{{corpus}}/{{split}}.h5",
        spectrograms=spectrograms("{corpus}", "{split}"),
    output:
        uncalibrated("{proxy}", "{corpus}", "{split}"),
    params:
        settings=as_json(INFERENCE),
        runtime=runtime_param(),
    threads: 1
    resources:
        mem_mb=retry_mem(16000),
        runtime=240,
        gpu=1,
    log:
        f"{R}/logs/infer_uncalibrated/{{proxy}}/{{corpus}}/{{split}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} infer --checkpoint {input.model} --dump {input.dump} "
        "--spectrograms {input.spectrograms} --undo-calibration {input.record} --out {output} "
        "--settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"
