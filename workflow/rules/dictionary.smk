# Stage `dictionary`: spectrograms and the NMF dictionaries, the shared one and the variants of
# proxies that override nmf settings (proxyseg.dictionary).


rule spectrograms:
    """log(1 + |STFT|^2) of every file of a split, on the WavLM frame grid (proxy target and input)."""
    input:
        manifest=labels("{corpus}", "{split}", "manifest.tsv"),
        recordings=lambda wildcards: audio_inputs(wildcards.corpus, wildcards.split),
    output:
        f"{R}/spectrograms/{{corpus}}/{{split}}.h5",
    params:
        settings=settings_json(config["spectrogram"]),
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
        settings=as_json(nmf_settings()),
        runtime=runtime_param(),
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
        "--settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"


# Dictionary variants: proxies that override nmf settings (K, mu, corpora) get their own dictionary.


wildcard_constraints:
    variant="|".join(NMF_VARIANTS) or "^$",


rule pretrain_nmf_variant:
    """A dictionary for proxies that override nmf settings (K, mu, the corpora it is learned from)."""
    input:
        lambda wildcards: nmf_inputs(NMF_VARIANTS[wildcards.variant]),
    output:
        dictionary=f"{R}/nmf/variants/{{variant}}/dictionary.npz",
        costs=f"{R}/nmf/variants/{{variant}}/costs.tsv",
        figure=f"{R}/nmf/variants/{{variant}}/atoms.png",
        summary=f"{R}/nmf/variants/{{variant}}/dictionary.json",
    params:
        settings=lambda wildcards: as_json(NMF_VARIANTS[wildcards.variant]),
        runtime=runtime_param(),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.dictionary),
    threads: SIDE_THREADS
    resources:
        mem_mb=retry_mem(16000),
        runtime=120,
        gpu=1,
    log:
        f"{R}/logs/pretrain_nmf/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain_nmf/{{variant}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} pretrain-nmf {input} --out-dir {params.out_dir} --seed {params.seed} "
        "--settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"
