rule spectrograms:
    """log(1 + |STFT|^2) of every file of a split, on the WavLM frame grid (proxy target and input)."""
    input:
        manifest=labels("{corpus}", "{split}", "manifest.tsv"),
        recordings=lambda wildcards: audio_inputs(wildcards.corpus, wildcards.split),
    output:
        f"{R}/spectrograms/{{corpus}}/{{split}}.h5",
    params:
        settings=as_json(config["spectrogram"]),
    threads: SIDE_THREADS
    resources:
        mem_mb=retry_mem(8000),
        runtime=120,
        gpu=0,
    log:
        f"{R}/logs/spectrograms/{{corpus}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/spectrograms/{{corpus}}/{{split}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} spectrograms --manifest {input.manifest} --out {output} "
        "--settings {params.settings:q} > {log} 2>&1"


rule pretrain_nmf:
    """Sparse NMF dictionary W from class-balanced segments of the training corpora."""
    input:
        nmf_inputs(nmf_settings()),
    output:
        dictionary=f"{R}/nmf/dictionary.npz",
        costs=f"{R}/nmf/costs.tsv",
        figure=report(f"{R}/nmf/atoms.png", caption="../report/nmf_atoms.rst", category="Dictionary"),
        summary=f"{R}/nmf/dictionary.json",
    params:
        settings=as_json(nmf_cli_settings(nmf_settings())),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.dictionary),
    priority: CRITICAL_PATH  # beside the 1-thread feature caching jobs, not in the teacher's way
    threads: SIDE_THREADS
    resources:
        mem_mb=retry_mem(16000),
        runtime=120,
        gpu=1,
    log:
        f"{R}/logs/pretrain_nmf.log",
    benchmark:
        f"{R}/benchmarks/pretrain_nmf.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} pretrain-nmf {input} --out-dir {params.out_dir} --seed {params.seed} "
        "--settings {params.settings:q} > {log} 2>&1"


rule train_proxy:
    """Distil the teacher into one named proxy variant (config `proxies`)."""
    input:
        train=proxy_pairs("train"),
        dev=proxy_pairs("dev"),
        dictionary=lambda wildcards: dictionary_path(wildcards.proxy),
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
        settings=lambda wildcards: as_json(proxy_settings(wildcards.proxy)),
        runtime=runtime_param(lambda wildcards: proxy_settings(wildcards.proxy, runtime=True)),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
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
        "--settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"
